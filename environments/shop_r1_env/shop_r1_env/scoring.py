"""One scoring seam for every environment: the reward service, or the rules core.

A :class:`Scorer` turns ``(completion, ground truth)`` items into the client's
:class:`~client.RewardResult` (reward, score in [0, 1], every component, the parsed action
or the format-failure reason), in input order:

* :class:`ServiceScorer` (``reward_url`` set) posts them to ``/v1/rewards`` through
  :class:`client.RewardClient`: self-certainty is the service's (``model`` where it serves
  one), or the item's own value with ``self_certainty_source="provided"``. A service that
  cannot be reached raises :class:`client.TransportError` naming the URL after the
  client's retries; nothing is turned into a 0.
* :class:`RulesScorer` (no URL) scores in this process with ``reward_server.rewards``,
  exactly as ``shop-r1-reward score`` does: the self-certainty term is the item's own
  value when it carries one (source ``provided``), else it is left out (source ``none``)::

      reward = 0                                               if the format fails
      reward = format + type + attribute + value [+ alpha * s]  otherwise

``Scorer.alpha`` is the weight of ``s`` in that total, so that an environment that logs
the components one by one can weight them to add up to the reward exactly:
``reward == format + type + attribute + value + alpha * (s or 0)``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from client import RetryPolicy, RewardClient, RewardResult, ScoreItem
from reward_contract import CertaintySource
from reward_server.config import RewardConfig, load_config
from reward_server.results import NO_CERTAINTY, ItemResult, provided_certainty, result_dict
from reward_server.rewards import score_batch


class ScoringFields(BaseModel):
    """Where and how to score: the fields every environment's own config carries (a
    verifiers TaskConfig, a NeMo Gym server config, the OpenEnv server's options).

    ``reward_url``: base URL(s) of the service, comma-separated (None: the rules core in
    this process). ``reward_profile`` and ``reward_config`` (a JSON object of reward
    overrides) choose the reward settings; ``reward_timeout`` and ``reward_max_attempts``
    bound one service call.
    """

    reward_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    self_certainty_source: CertaintySource | None = None
    reward_profile: str | None = None
    reward_config: str | None = None
    reward_timeout: float = Field(default=120.0, gt=0)
    reward_max_attempts: int = Field(default=5, ge=1)

    def scorer_settings(self) -> ScorerSettings:
        return ScorerSettings(**{name: getattr(self, name) for name in ScoringFields.model_fields})


class ScorerSettings(ScoringFields):
    """The scoring fields, checked and frozen: hashable, so one scorer serves every equal
    setting."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _consistent(self) -> ScorerSettings:
        if self.reward_url is not None and not self.reward_url.strip():
            raise ValueError("reward_url: empty; leave it unset to score in-process")
        if self.reward_url is None and self.self_certainty_source == "model":
            raise ValueError(
                "self_certainty_source: 'model' needs the reward service (set reward_url); "
                "in-process scoring has 'provided' or 'none'"
            )
        self.overrides()  # a bad reward_config is refused here, naming the field
        return self

    def overrides(self) -> dict[str, Any] | None:
        if self.reward_config is None:
            return None
        try:
            parsed = json.loads(self.reward_config)
        except ValueError as exc:
            raise ValueError(f"reward_config: not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("reward_config: must be a JSON object of reward settings")
        return parsed


class Scorer(Protocol):
    """Scores items in input order; ``alpha`` weights self-certainty in the reward."""

    settings: ScorerSettings

    @property
    def alpha(self) -> float: ...

    def score(self, items: Sequence[ScoreItem]) -> list[RewardResult]: ...

    async def ascore(self, items: Sequence[ScoreItem]) -> list[RewardResult]: ...

    def describe(self) -> str: ...


class RulesScorer:
    """The rules core in this process (``reward_server.rewards.score_batch``)."""

    def __init__(self, settings: ScorerSettings) -> None:
        self.settings = settings
        self.config: RewardConfig = load_config(settings.reward_profile or "paper").with_overrides(
            settings.overrides()
        )

    @property
    def alpha(self) -> float:
        return self.config.alpha

    def score(self, items: Sequence[ScoreItem]) -> list[RewardResult]:
        provided = self.settings.self_certainty_source != "none"
        certainties = [item.self_certainty if provided else None for item in items]
        breakdowns = score_batch(
            [item.completion for item in items],
            [item.ground_truth for item in items],
            self.config,
            certainties,
        )
        results = []
        for index, (item, breakdown, value) in enumerate(
            zip(items, breakdowns, certainties, strict=True)
        ):
            info = NO_CERTAINTY if value is None else provided_certainty(breakdown.format_ok)
            wire = result_dict(ItemResult(index, item.id, breakdown, info))
            results.append(RewardResult.from_wire(wire, index))
        return results

    async def ascore(self, items: Sequence[ScoreItem]) -> list[RewardResult]:
        # A few items of linear, capped work (completions are bounded by
        # max_completion_chars before parsing): cheaper inline than a thread hop.
        return self.score(items)

    def describe(self) -> str:
        return f"rules core in-process (profile {self.settings.reward_profile or 'paper'})"


class ServiceScorer:
    """The reward service through :class:`client.RewardClient` (thread-safe, pooled)."""

    def __init__(self, settings: ScorerSettings) -> None:
        if settings.reward_url is None:
            raise ValueError("reward_url: a ServiceScorer needs the service's URL")
        self.settings = settings
        self.client = RewardClient(
            settings.reward_url,
            api_key=settings.api_key,
            timeout=settings.reward_timeout,
            retry=RetryPolicy(max_attempts=settings.reward_max_attempts),
        )
        self._alpha: float | None = None

    @property
    def alpha(self) -> float:
        """The service's effective alpha for these settings: the named profile's, else the
        one the server runs with (``GET /v1/config``), overrides applied on top."""
        if self._alpha is None:
            if self.settings.reward_profile is not None:
                base = load_config(self.settings.reward_profile)
            else:
                base = RewardConfig.model_validate(self.client.server_config()["config"])
            self._alpha = base.with_overrides(self.settings.overrides()).alpha
        return self._alpha

    def score(self, items: Sequence[ScoreItem]) -> list[RewardResult]:
        batch = self.client.score(
            items,
            config=self.settings.overrides(),
            self_certainty_source=self.settings.self_certainty_source,
            profile=self.settings.reward_profile,
        )
        return batch.results

    async def ascore(self, items: Sequence[ScoreItem]) -> list[RewardResult]:
        # The blocking client on a worker thread: one pooled client serves every event
        # loop a framework may run (an asyncio client is bound to the loop it was made on).
        return await asyncio.to_thread(self.score, items)

    def describe(self) -> str:
        return f"reward service at {self.settings.reward_url}"


def make_scorer(settings: ScorerSettings) -> Scorer:
    """A new scorer: the service when ``settings.reward_url`` is set, else the rules core."""
    if settings.reward_url is None:
        return RulesScorer(settings)
    return ServiceScorer(settings)


@lru_cache(maxsize=16)
def scorer_for(settings: ScorerSettings) -> Scorer:
    """The process's one scorer for ``settings`` (its HTTP connections are reused)."""
    return make_scorer(settings)

