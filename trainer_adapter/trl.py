"""TRL adapter: ``async def`` reward functions for ``GRPOTrainer``.

::

    from trainer_adapter.trl import shop_r1_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[shop_r1_reward], train_dataset=ds, ...)

The dataset needs a ``prompt`` column (text or chat messages) and a ``ground_truth``
column (the shopper's action, a dict or JSON string); TRL passes every column to reward
functions as a list. A ``self_certainty`` column, when present, is sent as the trainer's
own value (use ``SHOP_R1_SELF_CERTAINTY_SOURCE=provided``; see
:mod:`trainer_adapter.certainty`).

Returns one ``float`` per completion: the Shop-R1 reward. ``None`` (TRL: "cannot score",
zero advantage for the row) only when the service could not score the batch after every
retry (unreachable, overloaded, deadline); never 0.0 in its place. A bad request (an
invalid ground truth) raises: it is a data bug that retrying cannot fix.

Components are logged through TRL's ``log_metric`` as ``shop_r1/<component>`` means
(``format``, ``type``, ``attribute``, ``value``, ``score``, ``format_ok``, ``unscored``,
``terminate_share`` (the share of answers that leave: the reward-hacking signal);
``self_certainty`` over the completions that have one, ``self_certainty_missing`` the
share without, ``self_certainty_approximate`` the share of values computed without the
prompt) and, per sample, through ``log_extra`` (``action_type``, ``format_error``).
Called without a trainer (a plain script) they are simply not logged::

    rewards = asyncio.run(shop_r1_reward(prompts=[...], completions=[...], ground_truth=[...]))

Configuration: the ``SHOP_R1_*`` variables (see :mod:`trainer_adapter._settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from client import (
    BadRequestError,
    ResponseMismatchError,
    RewardBatch,
    RewardClientError,
    ScoreItem,
)
from reward_contract import RULE_COMPONENTS
from trainer_adapter._results import mean
from trainer_adapter._settings import AdapterSettings, async_client, text_of

__all__ = ["log_components", "make_items", "shop_r1_reward"]

log = logging.getLogger(__name__)
METRIC_PREFIX = "shop_r1/"


def make_items(
    prompts: Sequence[Any] | None,
    completions: Sequence[Any],
    ground_truth: Sequence[Any],
    self_certainty: Sequence[float | None] | None = None,
) -> list[ScoreItem]:
    """Score items from TRL's reward-function arguments (lists aligned with completions)."""
    count = len(completions)
    if len(ground_truth) != count:
        raise ValueError(f"{len(ground_truth)} ground_truth values for {count} completions")
    prompts = list(prompts) if prompts is not None else [None] * count
    certainties = list(self_certainty) if self_certainty is not None else [None] * count
    return [
        ScoreItem(
            completion=text_of(completion),
            ground_truth=truth,
            prompt=prompt if prompt else None,
            self_certainty=certainty,
        )
        for prompt, completion, truth, certainty in zip(
            prompts, completions, ground_truth, certainties, strict=True
        )
    ]


def log_components(
    batch: RewardBatch,
    log_metric: Callable[[str, float], None] | None,
    log_extra: Callable[[str, list], None] | None = None,
) -> None:
    """Send the batch's component means to TRL's ``log_metric`` (and columns to ``log_extra``)."""
    results = batch.results
    if log_metric is not None and results:
        for name in RULE_COMPONENTS:
            log_metric(METRIC_PREFIX + name, mean([getattr(r.components, name) for r in results]))
        log_metric(METRIC_PREFIX + "score", mean([r.score for r in results]))
        log_metric(METRIC_PREFIX + "format_ok", mean([float(r.format_ok) for r in results]))
        # The reward-hacking signal of a policy that learns to leave early (no DARS).
        leaving = [float(r.action is not None and r.action["type"] == "terminate") for r in results]
        log_metric(METRIC_PREFIX + "terminate_share", mean(leaving))
        present = [r for r in results if r.components.self_certainty is not None]
        if present:  # the mean over the completions that have one, never a mean with gaps
            values = [r.components.self_certainty for r in present]
            log_metric(METRIC_PREFIX + "self_certainty", mean(values))  # type: ignore[arg-type]
            approximate = [float(r.certainty.approximate) for r in present]
            log_metric(METRIC_PREFIX + "self_certainty_approximate", mean(approximate))
        log_metric(METRIC_PREFIX + "self_certainty_missing", 1 - len(present) / len(results))
        log_metric(METRIC_PREFIX + "unscored", 0.0)
    if log_extra is not None and results:
        log_extra("action_type", [r.action["type"] if r.action else None for r in results])
        log_extra(
            "format_error", [r.format_error.reason if r.format_error else None for r in results]
        )


async def shop_r1_reward(
    prompts: Sequence[Any] | None = None,
    completions: Sequence[Any] = (),
    completion_ids: Sequence[Sequence[int]] | None = None,
    *,
    ground_truth: Sequence[Any] | None = None,
    self_certainty: Sequence[float | None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Shop-R1 reward of each completion (REWARD_CONTRACT.md §5), scored by the reward service.

    ``reward = 0`` on a format failure, else ``format + type + attribute + value
    (+ alpha * self_certainty)``; e.g. a ``terminate`` answer to a ``terminate`` ground
    truth earns 0.8, an exact click 1001.0.
    """
    if ground_truth is None:
        raise ValueError(
            "shop_r1_reward needs a 'ground_truth' dataset column (the shopper's real action)"
        )
    if not completions:
        return []
    settings = AdapterSettings.from_env()
    items = make_items(prompts, completions, ground_truth, self_certainty)
    try:
        batch = await async_client(settings).score(items, **settings.score_kwargs())
    except (BadRequestError, ResponseMismatchError):
        raise  # a data or deployment bug: retrying or None would only hide it
    except RewardClientError as exc:
        log.error("Shop-R1 reward unavailable for %d completions: %s", len(items), exc)
        if log_metric is not None:
            log_metric(METRIC_PREFIX + "unscored", 1.0)
        return [None] * len(items)
    log_components(batch, log_metric, log_extra)
    return [result.reward for result in batch.results]
