"""Helpers shared by the adapters: response text clean-up and component summaries."""

from __future__ import annotations

import math
from typing import Any

from client import RewardResult
from reward_contract import RULE_COMPONENTS


def component_lists(results: list[RewardResult]) -> dict[str, list[float]]:
    """Per-item component values, named as the trainers log them (means per step).

    ``self_certainty`` is included only when every item has one (a mean over a mix of
    values and gaps would mislead); ``self_certainty_missing`` says how many lack it.
    """
    logs = {
        name: [float(getattr(r.components, name)) for r in results] for name in RULE_COMPONENTS
    }
    logs["format_ok"] = [float(r.format_ok) for r in results]
    certainties = [r.components.self_certainty for r in results]
    if certainties and all(value is not None for value in certainties):
        logs["self_certainty"] = [float(v) for v in certainties]  # type: ignore[arg-type]
    logs["self_certainty_missing"] = [float(value is None) for value in certainties]
    return logs


def flat_result(result: RewardResult) -> dict[str, Any]:
    """One result as a flat dict with a fixed key set (verl ``reward_extra_info``).

    ``score`` is the reward the policy is trained on (REWARD_SPEC 5, DARS scale);
    ``score_normalized`` is the 0..1 score; a missing self-certainty is NaN (never 0) with
    ``self_certainty_missing`` = 1.0.
    """
    certainty = result.components.self_certainty
    return {
        "score": result.reward,
        "score_normalized": result.score,
        **{name: float(getattr(result.components, name)) for name in RULE_COMPONENTS},
        "self_certainty": math.nan if certainty is None else float(certainty),
        "self_certainty_missing": float(certainty is None),
        "format_ok": float(result.format_ok),
    }


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
