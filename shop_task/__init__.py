"""The Shop-R1 task: prompts built from recorded shopping steps, split by episode, and
every trainer's row format. Pure Python: imports only the standard library and
``reward_contract`` (``pyarrow`` only to write verl's parquet).

>>> task = build_task()
>>> {row.episode_id for row in task.train} & {row.episode_id for row in task.test}
set()
"""

from __future__ import annotations

from shop_task.builder import SYSTEM_PROMPT, ShopTask, TaskOptions, TaskRow, build_task
from shop_task.page import Element, render_page
from shop_task.steps import DEFAULT_STEPS_PATH, ShoppingStep, SkippedLine, load_steps

__all__ = [
    "DEFAULT_STEPS_PATH",
    "SYSTEM_PROMPT",
    "Element",
    "ShopTask",
    "ShoppingStep",
    "SkippedLine",
    "TaskOptions",
    "TaskRow",
    "build_task",
    "load_steps",
    "render_page",
]
