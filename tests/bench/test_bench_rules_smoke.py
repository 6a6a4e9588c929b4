"""bench/bench_rules.py runs end to end at a tiny size: its correctness checks pass and
it ends with its JSON line. No figure is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_rules_runs_and_prints_its_json_line() -> None:
    run = subprocess.run(
        [sys.executable, "bench/bench_rules.py", "--items", "60", "--repeats", "1",
         "--chunk", "20"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    last = json.loads(run.stdout.strip().splitlines()[-1])
    assert last["bench"] == "rules"
    assert {"ratio_vs_baseline", "library_items_per_s", "baseline_items_per_s"} <= set(last)
