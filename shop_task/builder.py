"""The Shop-R1 task (REWARD_CONTRACT.md §1) from recorded shopping steps.

Each step of a recorded episode becomes one prompt: the site and the shopper's goal, the
actions taken so far (all of them, or only the latest ones), and the current page as
simplified HTML. On that page the element the shopper really acted on sits among
``distractors`` other elements of the same site, drawn from the same split's episodes with
a generator seeded by ``(seed, episode, step)``, so a row never depends on which other
rows are built. A step that types gets its input on the page; ``terminate`` gets a page of
distractors only. The answer asked for is the JSON object ``{"rationale", "action"}``.

Episodes, not steps, are split into train and test: with ``test_fraction`` f, the first
``round(f * episodes)`` of the episode ids in an order shuffled by ``seed`` are the test
split, so no episode is in both.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shop_task.page import Element, render_page
from shop_task.steps import DEFAULT_STEPS_PATH, ShoppingStep, SkippedLine, load_steps

Split = Literal["train", "test"]

SYSTEM_PROMPT = (
    "You are simulating a real online shopper. Given the shopping goal, the actions taken "
    "so far and the current page, answer with ONE JSON object and nothing else: "
    '{"rationale": "<why, in the first person>", "action": <action>} where <action> is '
    '{"type": "click", "name": "<element name>"}, '
    '{"type": "type_and_submit", "name": "<input name>", "text": "<what you type>"} or '
    '{"type": "terminate"}. Use the name attribute of an element on the page.'
)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How prompts are built and split.

    ``history``: ``"full"`` (every earlier action of the episode), ``"latest"`` (the last
    one only) or an int (the last that many). ``distractors``: other elements on the page
    beside the target (fewer when the site has fewer). ``seed`` drives the split and the
    distractors; ``test_fraction`` is the share of episodes held out.
    """

    history: Literal["full", "latest"] | int = "full"
    distractors: int = 6
    seed: int = 0
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.history not in ("full", "latest") and not (
            isinstance(self.history, int) and not isinstance(self.history, bool)
            and self.history >= 0
        ):
            raise ValueError(
                f"history must be 'full', 'latest' or an int >= 0, got {self.history!r}"
            )
        if not 0 <= self.distractors <= 1000:
            raise ValueError(f"distractors must be in [0, 1000], got {self.distractors}")
        if not 0 <= self.test_fraction <= 1:
            raise ValueError(f"test_fraction must be in [0, 1], got {self.test_fraction}")

    def kept_history(self, history: Sequence[str]) -> tuple[str, ...]:
        if self.history == "full":
            return tuple(history)
        keep = 1 if self.history == "latest" else int(self.history)
        return tuple(history[len(history) - keep:]) if keep else ()


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One prompt of the task and the shopper's real next action."""

    episode_id: str
    step: int
    site: str
    goal: str
    history: tuple[str, ...]
    page_html: str
    ground_truth: dict[str, str]
    split: Split
    line_number: int
    messages: list[dict[str, str]] = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.episode_id}/{self.step}"

    @property
    def ground_truth_json(self) -> str:
        return json.dumps(self.ground_truth, ensure_ascii=False)

    @property
    def action_type(self) -> str:
        return self.ground_truth["type"]


@dataclass(frozen=True, slots=True)
class ShopTask:
    """The built task: train and test rows (episode, then step order) and skipped lines."""

    train: tuple[TaskRow, ...]
    test: tuple[TaskRow, ...]
    skipped: tuple[SkippedLine, ...]
    options: TaskOptions

    def split(self, name: Split) -> tuple[TaskRow, ...]:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test

    def episodes(self, name: Split) -> list[list[TaskRow]]:
        """The split's episodes, each a list of its rows in step order."""
        grouped: dict[str, list[TaskRow]] = {}
        for row in self.split(name):
            grouped.setdefault(row.episode_id, []).append(row)
        return list(grouped.values())


def user_message(site: str, goal: str, history: Sequence[str], page_html: str) -> str:
    """The user turn of a prompt."""
    done = "\n".join(history) if history else "(none yet)"
    return (
        f"Site: {site}\nGoal: {goal or '(not stated)'}\nActions so far:\n{done}\n"
        f"Current page:\n{page_html}\nWhat do you do next?"
    )


def build_task(
    path: str | Path = DEFAULT_STEPS_PATH, options: TaskOptions | None = None
) -> ShopTask:
    """The task built from the steps file at ``path`` (see the module docstring)."""
    options = options or TaskOptions()
    loaded = load_steps(path)
    test_ids = _test_episodes(loaded.steps, options)
    rows: dict[Split, list[TaskRow]] = {"train": [], "test": []}
    for split in ("train", "test"):
        steps = [s for s in loaded.steps if (s.episode_id in test_ids) == (split == "test")]
        pools = _site_elements(steps)
        for step in sorted(steps, key=lambda s: (s.episode_id, s.step, s.line_number)):
            rows[split].append(_row(step, pools[step.site], split, options))
    return ShopTask(tuple(rows["train"]), tuple(rows["test"]), loaded.skipped, options)


def _test_episodes(steps: Iterable[ShoppingStep], options: TaskOptions) -> set[str]:
    episodes = sorted({step.episode_id for step in steps})
    random.Random(f"split:{options.seed}").shuffle(episodes)
    return set(episodes[: round(options.test_fraction * len(episodes))])


def _element(step: ShoppingStep) -> Element:
    return Element(step.name, typable=step.kind == "type_and_submit", role=step.role)


def _site_elements(steps: Iterable[ShoppingStep]) -> dict[str, list[Element]]:
    """Each site's distinct elements (by name, first seen wins), in a stable order."""
    pools: dict[str, dict[str, Element]] = defaultdict(dict)
    for step in steps:
        if step.kind != "terminate":
            pools[step.site].setdefault(step.name, _element(step))
    return defaultdict(list, {site: list(by_name.values()) for site, by_name in pools.items()})


def _row(step: ShoppingStep, pool: list[Element], split: Split, options: TaskOptions) -> TaskRow:
    rng = random.Random(f"page:{options.seed}:{step.episode_id}:{step.step}")
    others = [element for element in pool if element.name != step.name]
    page = rng.sample(others, min(options.distractors, len(others)))
    if step.kind != "terminate":
        page.insert(rng.randrange(len(page) + 1), _element(step))
    page_html = render_page(step.site, page)
    history = options.kept_history(step.history)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(step.site, step.goal, history, page_html)},
    ]
    return TaskRow(
        episode_id=step.episode_id,
        step=step.step,
        site=step.site,
        goal=step.goal,
        history=history,
        page_html=page_html,
        ground_truth=step.action(),
        split=split,
        line_number=step.line_number,
        messages=messages,
    )
