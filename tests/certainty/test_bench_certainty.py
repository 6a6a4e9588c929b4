"""The inputs that ``bench/bench_certainty.py`` builds from ``data/shopping-steps``: every
completion is a well-formed Shop-R1 answer whose rationale span is the one the service
parses from it (REWARD_CONTRACT.md §4), for every step of the data, so a workload of any
size (the training step draws 512 of them) can be built."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from reward_server.rewards.parsing import parse_completion

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_certainty.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_certainty", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shopping_step_gives_a_completion_with_the_parsed_span(tiny_tokenizer):
    bench = _bench()
    rng = random.Random(0)
    rows = [r for r in bench._records() if r.get("text") or r.get("name")]
    # Not vacuous: some steps hold characters that JSON escapes inside the rationale.
    assert any('"' in (r.get("name") or "") + (r.get("context_hint") or "") for r in rows)
    for row in rows:
        text, span = bench._completion(tiny_tokenizer, row, 12, rng)
        parsed = parse_completion(text)
        assert parsed.rationale_span == span, (row, text)
