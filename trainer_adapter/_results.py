"""Per-sample log rows of the adapters, from the client's results.

The key set, the row and the approximate decision are the contract's
(:mod:`reward_contract.logs`, :func:`reward_contract.certainty.approximate_reason`), the
same as the service's ``/get_reward`` ``extra_logs``; this module only reads a client
:class:`~client.RewardResult` into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client import RewardResult
from reward_contract.certainty import approximate_reason
from reward_contract.logs import log_columns, log_row

__all__ = ["component_lists", "flat_result", "log_fields", "mean"]


def log_fields(result: RewardResult, prompt_cut: bool = False) -> dict[str, float]:
    """One result's :data:`~reward_contract.logs.LOG_KEYS` values; ``prompt_cut`` marks a
    value computed on a prompt the trainer cut (the service could not know)."""
    value = result.components.self_certainty
    approximate = result.certainty.approximate or approximate_reason(
        value, result.certainty.source, prompt_sent=True, prompt_cut=prompt_cut
    ) is not None
    return log_row(result.components, result.format_ok, value, approximate)


def component_lists(
    results: Sequence[RewardResult], prompt_cut: Sequence[bool] | None = None
) -> dict[str, list[float]]:
    """Per-sample component values, one list per key, the same keys for any batch."""
    cut = list(prompt_cut) if prompt_cut is not None else [False] * len(results)
    return log_columns([log_fields(r, was_cut) for r, was_cut in zip(results, cut, strict=True)])


def flat_result(result: RewardResult, prompt_cut: bool = False) -> dict[str, Any]:
    """One result as a flat dict with a fixed key set (verl ``reward_extra_info``).

    ``score`` is the reward the policy is trained on (REWARD_CONTRACT.md §5, DARS scale);
    ``score_normalized`` is the 0..1 score.
    """
    return {"score": result.reward, "score_normalized": result.score,
            **log_fields(result, prompt_cut)}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
