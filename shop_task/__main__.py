"""``python -m shop_task OUT_DIR``: write the task's train and test splits in every
trainer's row format (``OUT_DIR/<format>/<split>.jsonl`` or ``.parquet``), and report
every skipped input line on stderr."""

from __future__ import annotations

import argparse
import sys

from shop_task.builder import TaskOptions, build_task
from shop_task.rows import FORMATS, write_format
from shop_task.steps import DEFAULT_STEPS_PATH


def history_option(value: str) -> str | int:
    return value if value in ("full", "latest") else int(value)


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that shape the task, shared by every command that builds it."""
    parser.add_argument(
        "--steps-file", default=str(DEFAULT_STEPS_PATH), help="the recorded shopping steps (JSONL)"
    )
    parser.add_argument(
        "--history", type=history_option, default="full",
        help="earlier actions in the prompt: full, latest or a count (default: full)",
    )
    parser.add_argument(
        "--distractors", type=int, default=6, help="other elements on the page (default: 6)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split and distractor seed")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of episodes held out"
    )


def options_from(args: argparse.Namespace) -> TaskOptions:
    return TaskOptions(
        history=args.history, distractors=args.distractors, seed=args.seed,
        test_fraction=args.test_fraction,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shop_task", description=__doc__)
    parser.add_argument("out_dir", help="folder to write into")
    parser.add_argument(
        "--format", action="append", choices=FORMATS,
        help="row format (repeatable; default: all)",
    )
    add_task_arguments(parser)
    args = parser.parse_args(argv)
    task = build_task(args.steps_file, options_from(args))
    for skipped in task.skipped:
        print(f"{args.steps_file}: skipped {skipped}", file=sys.stderr)
    for fmt in args.format or FORMATS:
        for split, path in write_format(task, fmt, args.out_dir).items():
            print(f"{fmt} {split}: {len(task.split(split))} rows -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
