"""shop-r1: predict a real online shopper's next action (single-turn).

Each task is one recorded shopping step built by ``shop_task`` (the site, the shopper's
goal, the actions so far and the current page as simplified HTML); the model answers
with one JSON object ``{"rationale", "action"}``. The reward is Shop-R1's, exactly as the
reward service computes it, logged as one verifiers reward per component::

    reward = format + type + attribute + value + alpha * self_certainty

with weights 1, 1, 1, 1 and ``alpha`` (the component values are already weighted by the
reward contract: ``format`` is 0.5 or 0, ...). A completion that fails the format check
scores 0 in every component, and its reason is kept in ``trace.info["shop_r1"]``.
``self_certainty`` scores 0.0 where it was not computed (the metric
``self_certainty_missing`` is then 1), which leaves the total unchanged.

Scoring goes to the reward service when ``--env.taskset.task.reward_url`` is set (its
model's self-certainty included), else to the rules core in this process (self-certainty
left out). An unreachable service fails the rollout's scoring with an error naming the
URL; it is never a reward of 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

import verifiers.v1 as vf
from shop_r1_env import ScoringFields, TaskFields, load_rows, read_user_rows, scorer_for

from client import ScoreItem

INFO_KEY = "shop_r1"


class ShopR1Data(vf.TaskData):
    ground_truth: dict[str, str]
    """The shopper's real next action, e.g. ``{"type": "click", "name": "Add to Cart"}``."""
    episode_id: str | None = None
    step: int | None = None


class ShopR1TaskConfig(vf.TaskConfig, ScoringFields):
    """Where the reward is computed (``--env.taskset.task.*``): ``reward_url`` (unset:
    the rules core here), ``api_key``, ``self_certainty_source``, ``reward_profile``,
    ``reward_config``, ``reward_timeout``, ``reward_max_attempts``."""


class ShopR1Task(vf.Task[ShopR1Data, vf.State, ShopR1TaskConfig]):
    def __init__(self, data: ShopR1Data, config: ShopR1TaskConfig | None = None) -> None:
        super().__init__(data, config)
        # One scoring call per trace, shared by the five component rewards that read it.
        self._scoring: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def key(self) -> str:
        return self.data.id or self.hash

    @vf.stop
    async def answered(self, trace: vf.Trace) -> bool:
        return trace.num_turns >= 1

    async def validate(self, runtime: vf.Runtime) -> bool:
        """The gold check (``vf-validate``): the shopper's own action, answered in the
        asked-for form, scores 1, the best reward of its type."""
        gold = json.dumps({"rationale": "This is what I came to do.",
                           "action": self.data.ground_truth})
        item = ScoreItem(completion=gold, ground_truth=self.data.ground_truth, id=self.data.id)
        (result,) = await scorer_for(self.config.scorer_settings()).ascore([item])
        return result.score == 1.0

    @vf.reward(weight=1.0, priority=4)
    async def format(self, trace: vf.Trace) -> float:
        """0.5 for one JSON object ``{"rationale", "action"}`` (REWARD_CONTRACT.md §2)."""
        return await self._component(trace, "format")

    @vf.reward(weight=1.0, priority=3)
    async def type(self, trace: vf.Trace) -> float:
        """0.3 when the action type is the shopper's."""
        return await self._component(trace, "type")

    @vf.reward(weight=1.0, priority=2)
    async def attribute(self, trace: vf.Trace) -> float:
        """The sub-action presence reward (0.2, or 0.1 + 0.1)."""
        return await self._component(trace, "attribute")

    @vf.reward(weight=1.0, priority=1)
    async def value(self, trace: vf.Trace) -> float:
        """ROUGE-L of name and text, thresholded at 0.75 and scaled by DARS."""
        return await self._component(trace, "value")

    # The weight is set to the scorer's alpha by ShopR1Taskset (a TaskConfig reward entry);
    # 0.005 is the paper's.
    @vf.reward(weight=0.005, priority=0)
    async def self_certainty(self, trace: vf.Trace) -> float:
        """Mean KL(U || p) over the rationale's tokens; 0.0 where not computed."""
        return await self._component(trace, "self_certainty")

    @vf.metric
    async def shop_r1(self, trace: vf.Trace) -> Mapping[str, float]:
        outcome = await self.outcome(trace)
        return {
            "shop_r1_score": outcome["score"],
            "format_ok": float(outcome["format_ok"]),
            "self_certainty_missing": float(outcome["components"]["self_certainty"] is None),
        }

    async def _component(self, trace: vf.Trace, name: str) -> float:
        value = (await self.outcome(trace))["components"][name]
        return 0.0 if value is None else value

    async def outcome(self, trace: vf.Trace) -> dict[str, Any]:
        """The trace's scored result (the client's RewardResult as a dict), scored once
        and kept in ``trace.info["shop_r1"]``."""
        stored = trace.info.get(INFO_KEY)
        if stored is not None:
            return stored
        running = self._scoring.get(trace.id)
        if running is None:
            running = asyncio.ensure_future(self._score(trace))
            self._scoring[trace.id] = running
            running.add_done_callback(lambda _: self._scoring.pop(trace.id, None))
        return await running

    async def _score(self, trace: vf.Trace) -> dict[str, Any]:
        replies = trace.assistant_messages
        # The raw reply, not trace.last_reply (stripped): scored exactly as sent.
        completion = (replies[-1].content or "") if replies else ""
        item = ScoreItem(
            completion=completion,
            ground_truth=self.data.ground_truth,
            prompt=self.prompt_messages(),
            id=self.data.id,
        )
        scorer = scorer_for(self.config.scorer_settings())
        (result,) = await scorer.ascore([item])
        outcome = dataclasses.asdict(result)
        trace.info[INFO_KEY] = outcome
        return outcome

    def prompt_messages(self) -> list[dict[str, str]]:
        """The chat the model answered: the system prompt, then the prompt's messages."""
        messages = [{"role": "system", "content": self.data.system_prompt}] if (
            self.data.system_prompt
        ) else []
        prompt = self.data.prompt
        if isinstance(prompt, str):
            return [*messages, {"role": "user", "content": prompt}]
        return [*messages, *({"role": m.role, "content": m.content} for m in prompt or [])]


class ShopR1Config(vf.TasksetConfig, TaskFields):
    """Which rows load (``--env.taskset.*``): the task's ``split`` built by ``shop_task``
    with the task options (``history``, ``distractors``, ``seed``, ``test_fraction``,
    ``steps_path``), or the user's ``rows_path`` (JSON lines ``{"prompt": [messages],
    "ground_truth": <action>, "id"?}``, as ``python -m shop_task`` writes them)."""

    task: ShopR1TaskConfig = ShopR1TaskConfig()
    split: Literal["train", "test"] = "train"
    rows_path: str | None = None


class ShopR1Taskset(vf.Taskset[ShopR1Task, ShopR1Config]):
    def load(self) -> list[ShopR1Task]:
        config = self.task_config()
        if self.config.rows_path is not None:
            rows = read_user_rows(self.config.rows_path)
        else:
            rows = load_rows(self.config.task_source(), self.config.split)
        return [ShopR1Task(_data(row), config) for row in rows]

    def task_config(self) -> ShopR1TaskConfig:
        """The task config with ``self_certainty``'s weight set to the scorer's alpha, so
        the weighted components add up to the reward (unless the user set a weight)."""
        config = self.config.task
        plugged = config.rewards.get("self_certainty")
        if plugged is not None and plugged.weight is not None:
            return config
        alpha = scorer_for(config.scorer_settings()).alpha
        rewards = {**config.rewards, "self_certainty": vf.RewardFunctionConfig(weight=alpha)}
        return config.model_copy(update={"rewards": rewards})


def _data(row: Any) -> ShopR1Data:
    messages = list(row.messages)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    return ShopR1Data(
        id=row.id,
        prompt=messages[1:] if system is not None else messages,
        system_prompt=system,
        ground_truth=dict(row.ground_truth),
        episode_id=getattr(row, "episode_id", None),
        step=getattr(row, "step", None),
    )
