"""The Shop-R1 environment: replay one recorded shopping session, step by real step.

``reset()`` starts an episode of the task (``shop_task``): the one named by
``episode_id``, else one drawn with ``seed``, else the next in turn. Its observation is
the first step's prompt. ``step(action)`` scores the policy's answer against the
shopper's real action at that step, then moves to the episode's next real step, whatever
the policy answered (the session is a recording); ``done`` comes with the last step::

    reward = 0                                               if the answer's format fails
    reward = format + type + attribute + value [+ alpha * s]  otherwise

A malformed answer is a format failure (reward 0, ``format_error`` with its reason) and
the episode goes on. A scorer that fails (the reward service unreachable) raises naming
the URL, and the step is not taken: the same step can be sent again.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Sequence
from typing import Any

from openenv.core.env_server.interfaces import Environment
from shop_r1_env import Scorer

from client import RewardResult, ScoreItem

from ..models import ShopR1Action, ShopR1Observation, ShopR1State


class EpisodeBook:
    """The split's episodes (each a list of task rows in step order), shared by every
    session: finds one by id, draws one by seed, or hands them out in turn."""

    def __init__(self, episodes: Sequence[Sequence[Any]], split: str) -> None:
        if not episodes:
            raise ValueError(f"the {split} split has no episodes")
        self.episodes = [list(rows) for rows in episodes]
        self.split = split
        self._by_id = {rows[0].episode_id: rows for rows in self.episodes}
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def pick(self, episode_id: str | None, seed: int | None) -> list[Any]:
        if episode_id is not None:
            if episode_id not in self._by_id:
                raise ValueError(f"episode_id: no episode {episode_id!r} in the {self.split} split")
            return self._by_id[episode_id]
        if seed is not None:
            return self.episodes[random.Random(seed).randrange(len(self.episodes))]
        with self._lock:
            return self.episodes[next(self._turn) % len(self.episodes)]


class ShopR1Environment(Environment[ShopR1Action, ShopR1Observation, ShopR1State]):
    """One session's replay of an episode; sessions share only the read-only episodes
    and the (thread-safe) scorer."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, book: EpisodeBook, scorer: Scorer) -> None:
        super().__init__()
        self.book = book
        self.scorer = scorer
        self._rows: list[Any] = []
        self._position = 0
        self._state = ShopR1State(split=book.split)

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> ShopR1Observation:
        if kwargs:
            raise ValueError(f"unknown reset parameter(s): {', '.join(sorted(kwargs))}")
        self._rows = self.book.pick(episode_id, seed)
        self._position = 0
        self._state = ShopR1State(
            episode_id=self._rows[0].episode_id,
            step_count=0,
            split=self.book.split,
            steps_total=len(self._rows),
        )
        return self._observation(reward=None)

    def step(
        self, action: ShopR1Action, timeout_s: float | None = None, **kwargs: Any
    ) -> ShopR1Observation:
        if self._position >= len(self._rows):
            raise ValueError("no step to act on: call reset() to start an episode")
        row = self._rows[self._position]
        item = ScoreItem(
            completion=action.completion,
            ground_truth=row.ground_truth,
            prompt=row.messages,
            id=row.id,
            self_certainty=action.self_certainty,
        )
        (result,) = self.scorer.score([item])  # raises (naming the URL) before any move
        self._position += 1
        self._state.step_count += 1
        self._state.total_reward += result.reward
        return self._observation(reward=result.reward, scored=row, result=result)

    @property
    def state(self) -> ShopR1State:
        return self._state

    def _observation(
        self, reward: float | None, scored: Any = None, result: RewardResult | None = None
    ) -> ShopR1Observation:
        done = self._position >= len(self._rows)
        current = None if done else self._rows[self._position]
        fields: dict[str, Any] = {}
        if result is not None:
            error = result.format_error
            fields = {
                "scored_step_id": scored.id,
                "components": result.components.as_dict(),
                "score": result.score,
                "format_error": None
                if error is None
                else {"reason": error.reason, "detail": error.detail},
                "predicted_action": result.action,
                "expected_action": dict(scored.ground_truth),
            }
        metadata = {**fields, "format_ok": None if result is None else result.format_ok}
        if result is not None:
            metadata["certainty"] = {
                "source": result.certainty.source, "reason": result.certainty.reason
            }
        return ShopR1Observation(
            done=done,
            reward=reward,
            metadata=metadata,
            prompt=[] if current is None else list(current.messages),
            episode_id=self._rows[0].episode_id,
            step_id=None if current is None else current.id,
            steps_left=len(self._rows) - self._position,
            **fields,
        )
