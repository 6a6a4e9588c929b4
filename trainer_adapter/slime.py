"""slime adapter: ``--custom-rm-path trainer_adapter.slime.group_rm --group-rm``.

slime calls ``group_rm(args, samples)`` once per prompt group; the group is scored in one
service call. Without ``--group-rm`` use ``--custom-rm-path trainer_adapter.slime.rm``
(one sample per call; the service still batches concurrent requests itself).

Per sample: ``sample.prompt`` (text or chat messages), ``sample.response`` (the answer;
trailing end-of-turn markers are removed) and ``sample.label`` (the ground-truth action as
a JSON string). ``sample.metadata["self_certainty"]``, when set, is sent as the trainer's
own value (with ``SHOP_R1_SELF_CERTAINTY_SOURCE=provided``).

Returned reward: a float, or, when slime runs with ``--reward-key reward``, a dict with
``reward``, ``score`` and every component (slime picks ``reward`` and keeps the rest;
``self_certainty`` is null when not computed, ``self_certainty_reason`` says why, and
``self_certainty_approximate`` is true for a value computed without the prompt).
A failure raises after the client's retries (slime then fails the rollout loudly instead
of training on a made-up 0). No Python at all is needed for the per-sample remote mode:
``--rm-type remote_rm --rm-url http://HOST:8000/slime/reward --reward-key reward``.
Configuration: the ``SHOP_R1_*`` variables (see :mod:`trainer_adapter._settings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client import RewardResult, ScoreItem
from reward_contract import strip_end_markers
from reward_contract.logs import slime_reward_fields
from reward_contract.samples import SLIME_LABEL_HINT, check_label
from trainer_adapter._settings import AdapterSettings, async_client

__all__ = ["group_rm", "item_for", "rm"]


def item_for(sample: Any) -> ScoreItem:
    """A score item from a slime ``Sample`` (or any object with the same attributes)."""
    label = getattr(sample, "label", None)
    check_label(label, "Sample.label", SLIME_LABEL_HINT)
    metadata = getattr(sample, "metadata", None) or {}
    certainty = metadata.get("self_certainty") if isinstance(metadata, dict) else None
    prompt = getattr(sample, "prompt", None)
    return ScoreItem(
        completion=strip_end_markers(str(sample.response)),
        ground_truth=label,
        prompt=prompt or None,
        self_certainty=float(certainty) if certainty is not None else None,
    )


def _reward(args: Any, result: RewardResult) -> float | dict[str, Any]:
    if not getattr(args, "reward_key", None):
        return result.reward
    failure = result.format_error
    return slime_reward_fields(
        result.reward, result.score, result.components.as_dict(), result.certainty.reason,
        result.certainty.approximate, failure.reason if failure else None,
    )


async def group_rm(args: Any, samples: Sequence[Any]) -> list[float | dict[str, Any]]:
    """``--group-rm`` entry: one reward per sample of the group, in order."""
    if not samples:
        return []
    settings = AdapterSettings.from_env()
    items = [item_for(sample) for sample in samples]
    batch = await async_client(settings).score(items, **settings.score_kwargs())
    return [_reward(args, result) for result in batch.results]


async def rm(args: Any, sample: Any) -> float | dict[str, Any]:
    """Per-sample entry (slime without ``--group-rm``)."""
    return (await group_rm(args, [sample]))[0]
