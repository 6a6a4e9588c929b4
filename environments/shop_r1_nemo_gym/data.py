"""NeMo Gym dataset rows from the Shop-R1 task (``shop_task``, the one task builder).

One JSON object a line, as NeMo Gym's ``jsonl_fpath`` datasets hold them: the prompt in
``responses_create_params.input`` and the task's metadata that ``/verify`` reads::

    {"responses_create_params": {"input": [system, user]},
     "ground_truth": {"type": "click", "name": "Add to Cart"},
     "id": "<episode>/<step>", "episode_id": "...", "step": 3}

    python -m shop_r1_nemo_gym.data --split train -o data/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from shop_r1_env import TaskSource, load_rows


def gym_row(row: Any) -> dict[str, Any]:
    """One task row as a NeMo Gym dataset row."""
    return {
        "responses_create_params": {"input": list(row.messages)},
        "ground_truth": dict(row.ground_truth),
        "id": row.id,
        "episode_id": row.episode_id,
        "step": row.step,
    }


def write_rows(rows: Iterable[Any], sink: Any) -> int:
    count = 0
    for row in rows:
        sink.write(json.dumps(gym_row(row), ensure_ascii=False) + "\n")
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shop_r1_nemo_gym.data", description=__doc__)
    parser.add_argument("--split", choices=["train", "test"], default="train")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    parser.add_argument("--history", default="full", help="'full', 'latest' or a number")
    parser.add_argument("--distractors", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="output file (default: standard output)")
    args = parser.parse_args(argv)
    history = args.history if args.history in ("full", "latest") else int(args.history)
    source = TaskSource(history=history, distractors=args.distractors, seed=args.seed)
    rows = load_rows(source, args.split)[: args.limit]
    if args.output is None:
        count = write_rows(rows, sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8") as sink:
            count = write_rows(rows, sink)
    print(f"{count} {args.split} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
