"""Helpers shared by the adapters: per-sample component values with a fixed key set.

Every trainer that collects per-sample logs (OpenRLHF ``extra_logs``, verl
``reward_extra_info``) needs the same keys on every sample, whatever the batch holds. A
self-certainty that was not computed (format failure, no model, too long) is ``0.0``
with ``self_certainty_missing`` = 1.0, so the mean over the samples that have one is
``mean(self_certainty) / (1 - mean(self_certainty_missing))``; a value computed without
the whole prompt (none sent, or cut by the trainer) has ``self_certainty_approximate`` =
1.0 (REWARD_CONTRACT.md §4: it is defined over the prompt and the completion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client import RewardResult
from reward_contract import RULE_COMPONENTS

CERTAINTY_KEYS = ("self_certainty", "self_certainty_missing", "self_certainty_approximate")
# Every per-sample key the adapters log besides ``score`` (verl) or the reward (OpenRLHF).
LOG_KEYS = ("format_ok", *RULE_COMPONENTS, *CERTAINTY_KEYS)


def certainty_fields(result: RewardResult, prompt_cut: bool = False) -> dict[str, float]:
    """``self_certainty`` (0.0 when missing), ``self_certainty_missing`` and
    ``self_certainty_approximate`` of one result; ``prompt_cut`` marks a value computed on
    a prompt the trainer cut (the service could not know)."""
    value = result.components.self_certainty
    approximate = value is not None and (result.certainty.approximate or prompt_cut)
    return {
        "self_certainty": 0.0 if value is None else float(value),
        "self_certainty_missing": float(value is None),
        "self_certainty_approximate": float(approximate),
    }


def component_lists(
    results: Sequence[RewardResult], prompt_cut: Sequence[bool] | None = None
) -> dict[str, list[float]]:
    """Per-sample component values, one list per key, the same keys for any batch."""
    cut = list(prompt_cut) if prompt_cut is not None else [False] * len(results)
    rows = [flat_result(result, was_cut) for result, was_cut in zip(results, cut, strict=True)]
    return {key: [float(row[key]) for row in rows] for key in LOG_KEYS}


def flat_result(result: RewardResult, prompt_cut: bool = False) -> dict[str, Any]:
    """One result as a flat dict with a fixed key set (verl ``reward_extra_info``).

    ``score`` is the reward the policy is trained on (REWARD_CONTRACT.md §5, DARS scale);
    ``score_normalized`` is the 0..1 score.
    """
    return {
        "score": result.reward,
        "score_normalized": result.score,
        **{name: float(getattr(result.components, name)) for name in RULE_COMPONENTS},
        **certainty_fields(result, prompt_cut),
        "format_ok": float(result.format_ok),
    }


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
