"""Write verl parquet files of the Shop-R1 task (``shop_task``):

    python examples/verl/prepare_data.py ~/shop_r1      # -> ~/shop_r1/verl/{train,test}.parquet

The same as ``python -m shop_task ~/shop_r1 --format verl`` (which also takes the task's
options: ``--history``, ``--distractors``, ``--seed``, ``--test-fraction``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from shop_task import build_task
from shop_task.rows import verl_row, write_format

__all__ = ["verl_row"]


if __name__ == "__main__":
    for split, path in write_format(build_task(), "verl", sys.argv[1]).items():
        print(f"{split}: {path}")
