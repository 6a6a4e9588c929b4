"""The rows an environment serves: the Shop-R1 task's, or a user's own.

The task's rows come from ``shop_task.build_task`` (the one task builder), cached per
:class:`TaskSource`; a user's rows are JSON lines in the task's chat-row form (what
``shop_task.rows.trl_row`` writes): ``{"prompt": [chat messages], "ground_truth": <action
object or its JSON string>}``, optionally with an ``id``. A bad user line raises naming its
line number and field; nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from shop_task import DEFAULT_STEPS_PATH, ShopTask, TaskOptions, build_task

Split = Literal["train", "test"]

# A user's file is read whole before any work: its size is capped first.
MAX_USER_ROWS_BYTES = 256 * 1024 * 1024


class PromptRow(Protocol):
    """What every skin needs of a row (``shop_task.TaskRow`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def messages(self) -> list[dict[str, str]]: ...

    @property
    def ground_truth(self) -> dict[str, Any]: ...


class TaskFields(BaseModel):
    """Which task to build, as every environment's own config carries it: the steps
    file and the ``shop_task.TaskOptions``."""

    steps_path: str = str(DEFAULT_STEPS_PATH)
    history: Literal["full", "latest"] | int = "full"
    distractors: int = 6
    seed: int = 0
    test_fraction: float = 0.2

    def task_source(self) -> TaskSource:
        return TaskSource(**{name: getattr(self, name) for name in TaskFields.model_fields})


class TaskSource(TaskFields):
    """The task fields, frozen: the key of the per-process task cache."""

    model_config = ConfigDict(frozen=True)

    def options(self) -> TaskOptions:
        return TaskOptions(
            history=self.history,
            distractors=self.distractors,
            seed=self.seed,
            test_fraction=self.test_fraction,
        )


@lru_cache(maxsize=8)
def build(source: TaskSource) -> ShopTask:
    """The task for ``source``, built once per process."""
    return build_task(source.steps_path, source.options())


def load_rows(source: TaskSource, split: Split) -> tuple[Any, ...]:
    """The ``split`` rows of the task, in episode then step order."""
    return build(source).split(split)


@dataclass(frozen=True)
class UserRow:
    """One row of a user's file."""

    id: str
    messages: list[dict[str, str]]
    ground_truth: dict[str, Any]
    line_number: int


def read_user_rows(path: str | Path) -> list[UserRow]:
    """Every row of the JSON-lines file at ``path`` (see the module docstring)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_USER_ROWS_BYTES:
        raise ValueError(f"{path}: {size} bytes, over the {MAX_USER_ROWS_BYTES}-byte limit")
    rows = []
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if line.strip():
                rows.append(_user_row(line, number, path))
    return rows


def _user_row(line: str, number: int, path: Path) -> UserRow:
    where = f"{path}: line {number}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: each line must be a JSON object")
    prompt = record.get("prompt")
    if not isinstance(prompt, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in prompt
    ) or not prompt:
        raise ValueError(f"{where}: prompt must be a non-empty list of {{role, content}} messages")
    truth = record.get("ground_truth")
    if isinstance(truth, str):
        try:
            truth = json.loads(truth)
        except ValueError as exc:
            raise ValueError(f"{where}: ground_truth is not JSON ({exc})") from None
    if not isinstance(truth, dict) or not isinstance(truth.get("type"), str):
        raise ValueError(f"{where}: ground_truth must be an action object with a type")
    row_id = record.get("id", f"{path.stem}/{number}")
    return UserRow(str(row_id), prompt, truth, number)
