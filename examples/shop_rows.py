"""Dataset rows for the trainer examples, from the task builder (``shop_task``).

Every row is ``{"prompt": [system, user chat messages], "ground_truth": "<action JSON>"}``:
the user turn holds the site, the shopper's goal, the actions so far and the current page
as simplified HTML; ``ground_truth`` is the shopper's real next action
(docs/REWARD_CONTRACT.md §1). ``python examples/shop_rows.py OUT_DIR`` writes the train
and test splits as JSON lines (``python -m shop_task`` writes every trainer's format).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from shop_task import DEFAULT_STEPS_PATH, TaskOptions, build_task
from shop_task.builder import Split
from shop_task.rows import chat_row, write_format


def read_rows(
    path: str | Path = DEFAULT_STEPS_PATH,
    limit: int | None = None,
    split: Split = "train",
    options: TaskOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """The first ``limit`` rows of the task's ``split`` built from ``path``."""
    rows = build_task(path, options).split(split)
    yield from map(chat_row, rows[:limit])


if __name__ == "__main__":
    for split_name, written in write_format(build_task(), "trl", sys.argv[1]).items():
        print(f"{split_name}: {written}")
