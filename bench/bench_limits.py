"""Per-item cost against input size, dimension by dimension, up to each limit.

Each dimension a client controls is grown by powers of two up to the service's limit for
it, and the work the service does for one item (or one request) is timed at each size:

* ``completion_chars``: parse and score one ``type_and_submit`` answer whose typed text
  has that many characters (limit: ``MAX_COMPLETION_CHARS``, a request may raise
  ``max_completion_chars`` that far);
* ``ground_truth_chars``: decode a ground truth given as a JSON string of that length and
  score an answer against it (limit: ``MAX_GROUND_TRUTH_FIELD_CHARS`` per field);
* ``end_markers``: what the trainer routes do with a reply followed by that many
  ``<|im_end|>`` markers: strip them, then parse (stripping stops at
  ``MAX_STRIPPED_CHARS``, so the cost flattens there);
* ``token_ids``: validate a one-item request body carrying that many ``completion_ids``
  (limit: ``MAX_TOKEN_IDS``);
* ``items``: score a batch of that many items (limit: the default ``--max-items``).

For each step the table shows the time per operation and its ratio to the previous size:
about 2 where the cost is linear, about 1 where it is capped or per item. The named
baseline of each dimension is its smallest size: ``per_unit_vs_smallest`` is the cost per
unit (character, marker, id, item) at the limit over the cost per unit at the smallest
size (at most about 1: nothing grows faster than linearly). The final JSON line carries
every figure; ``ratio_vs_baseline`` is the largest ``per_unit_vs_smallest``.

    python bench/bench_limits.py [--repeats 5] [--min-seconds 0.05]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from reward_contract import MAX_STRIPPED_CHARS, strip_end_markers
from reward_server.config import MAX_COMPLETION_CHARS, RewardConfig
from reward_server.protocol import MAX_TOKEN_IDS, RewardRequest
from reward_server.rewards import parse_completion, score_batch, score_completion
from reward_server.rewards.parsing import (
    MAX_GROUND_TRUTH_FIELD_CHARS,
    parse_ground_truth,
)

CONFIG = RewardConfig(max_completion_chars=MAX_COMPLETION_CHARS)
WORDS = "usb c cable braided two metre fast charging "
TRUTH = {"type": "type_and_submit", "name": "search_input", "text": "usb c cable braided"}
MAX_ITEMS = 4096


def answer(text: str) -> str:
    return json.dumps({"rationale": "I search for the cable I need.", "action": {
        "type": "type_and_submit", "name": "search_input", "text": text}})


def text_of(chars: int) -> str:
    return (WORDS * (chars // len(WORDS) + 1))[:chars]


def powers(start: int, limit: int) -> list[int]:
    sizes = []
    size = start
    while size < limit:
        sizes.append(size)
        size *= 2
    return [*sizes, limit]


def completion_chars(size: int) -> Callable[[], object]:
    completion = answer(text_of(size - len(answer(""))))
    truth = parse_ground_truth(TRUTH)
    return lambda: score_completion(completion, truth, CONFIG)


def ground_truth_chars(size: int) -> Callable[[], object]:
    truth_text = json.dumps({**TRUTH, "text": text_of(size)})
    completion = answer(text_of(64))
    # Past the decoded-label cache's reach: every call decodes the string again.
    return lambda: score_completion(completion, parse_ground_truth(truth_text), CONFIG)


def end_markers(size: int) -> Callable[[], object]:
    reply = answer("usb c cable") + "<|im_end|>" * size
    return lambda: parse_completion(strip_end_markers(reply), "strict", CONFIG.max_completion_chars)


def token_ids(size: int) -> Callable[[], object]:
    body = json.dumps({"items": [{"completion": answer("usb c cable"), "ground_truth": TRUTH,
                                  "completion_ids": list(range(size))}]}).encode()
    return lambda: RewardRequest.model_validate_json(body)


def items(size: int) -> Callable[[], object]:
    completions = [answer(text_of(20 + i % 40)) for i in range(size)]
    truths = [TRUTH] * size
    return lambda: score_batch(completions, truths, CONFIG)


DIMENSIONS: dict[str, tuple[Callable[[int], Callable[[], object]], list[int]]] = {
    "completion_chars": (completion_chars, powers(1024, MAX_COMPLETION_CHARS)),
    "ground_truth_chars": (ground_truth_chars, powers(64, MAX_GROUND_TRUTH_FIELD_CHARS)),
    "end_markers": (end_markers, powers(1, 16 * MAX_STRIPPED_CHARS // len("<|im_end|>"))),
    "token_ids": (token_ids, powers(128, MAX_TOKEN_IDS)),
    "items": (items, powers(1, MAX_ITEMS)),
}


def seconds_per_call(run: Callable[[], object], repeats: int, min_seconds: float) -> float:
    run()  # warm-up
    calls = 1
    while True:  # enough calls that one timing lasts min_seconds
        started = time.perf_counter()
        for _ in range(calls):
            run()
        if time.perf_counter() - started >= min_seconds:
            break
        calls *= 2
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            run()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.05)
    args = parser.parse_args()
    figures: dict[str, object] = {"bench": "limits"}
    worst = 0.0
    for name, (build, sizes) in DIMENSIONS.items():
        print(f"\n{name}")
        print(f"{'size':>10}{'us per op':>14}{'x previous':>12}{'size x':>8}")
        rows = []
        for size in sizes:
            seconds = seconds_per_call(build(size), args.repeats, args.min_seconds)
            growth = seconds / rows[-1][1] if rows else None
            size_growth = size / rows[-1][0] if rows else None
            rows.append((size, seconds))
            print(f"{size:>10}{seconds * 1e6:>14.1f}"
                  f"{'' if growth is None else f'{growth:.2f}':>12}"
                  f"{'' if size_growth is None else f'{size_growth:.2f}':>8}")
        (smallest, first), (largest, last) = rows[0], rows[-1]
        per_unit = (last / largest) / (first / smallest)
        worst = max(worst, per_unit)
        steps = [b[1] / a[1] / (b[0] / a[0]) for a, b in itertools.pairwise(rows)]
        print(f"per unit at the limit / per unit at the smallest size: {per_unit:.3f}; "
              f"largest step growth per size doubling: {max(steps):.2f}")
        figures[name] = {
            "sizes": [size for size, _ in rows],
            "us_per_op": [round(seconds * 1e6, 2) for _, seconds in rows],
            "per_unit_vs_smallest": round(per_unit, 3),
            "max_step_growth_per_size_growth": round(max(steps), 3),
        }
    figures["ratio_vs_baseline"] = round(worst, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
