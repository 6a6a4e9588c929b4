"""Per-sample values with one key set, for the trainers that keep each sample's reward
components (OpenRLHF ``extra_logs``, verl ``reward_extra_info``, slime's reward dict).

Every sample carries every key, whatever the batch holds: OpenRLHF concatenates the logs
of one-sample responses and splits them per experience, so a key missing from one sample
breaks the step. A self-certainty that was not computed (format failure, no model, too
long) is ``0.0`` with ``self_certainty_missing`` = 1.0, so the mean over the samples that
have one is ``mean(self_certainty) / (1 - mean(self_certainty_missing))``; a value
computed without the whole prompt has ``self_certainty_approximate`` = 1.0
(REWARD_CONTRACT.md §4, :func:`reward_contract.certainty.approximate_reason`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reward_contract import RULE_COMPONENTS

__all__ = [
    "CERTAINTY_LOG_KEYS",
    "LOG_KEYS",
    "RuleScores",
    "log_columns",
    "log_row",
    "slime_reward_fields",
]

CERTAINTY_LOG_KEYS = ("self_certainty", "self_certainty_missing", "self_certainty_approximate")
# Every per-sample key besides the reward itself (``rewards`` / ``score``).
LOG_KEYS = ("format_ok", *RULE_COMPONENTS, *CERTAINTY_LOG_KEYS)


class RuleScores(Protocol):
    """The rule components of one result by name (``RULE_COMPONENTS``): the service's
    breakdown and the client's ``Components`` both have them."""

    @property
    def format(self) -> float: ...
    @property
    def type(self) -> float: ...
    @property
    def attribute(self) -> float: ...
    @property
    def value(self) -> float: ...


def log_row(
    rules: RuleScores, format_ok: bool, self_certainty: float | None, approximate: bool
) -> dict[str, float]:
    """One sample's values under every key of :data:`LOG_KEYS`, all floats.

    >>> from types import SimpleNamespace as S
    >>> log_row(S(format=0.0, type=0.0, attribute=0.0, value=0.0), False, None, False)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'format_ok': 0.0, 'format': 0.0, 'type': 0.0, 'attribute': 0.0, 'value': 0.0,
     'self_certainty': 0.0, 'self_certainty_missing': 1.0, 'self_certainty_approximate': 0.0}
    """
    row = {"format_ok": float(format_ok)}
    row.update((name, float(getattr(rules, name))) for name in RULE_COMPONENTS)
    row["self_certainty"] = 0.0 if self_certainty is None else float(self_certainty)
    row["self_certainty_missing"] = float(self_certainty is None)
    row["self_certainty_approximate"] = float(self_certainty is not None and approximate)
    return row


def log_columns(rows: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    """The rows (:func:`log_row`) as one list per key of :data:`LOG_KEYS`, in row order;
    every key is there for an empty batch too."""
    return {key: [row[key] for row in rows] for key in LOG_KEYS}


def slime_reward_fields(
    reward: float,
    score: float,
    components: Mapping[str, float | None],
    certainty_reason: str | None,
    approximate: bool,
    format_error: str | None,
) -> dict[str, Any]:
    """One sample's dict for slime's ``--reward-key reward``: slime trains on ``reward``
    and keeps the rest. Unlike the log rows it keeps JSON's null: ``self_certainty`` is
    null when not computed and ``self_certainty_reason`` says why."""
    return {
        "reward": reward,
        "score": score,
        **components,
        "self_certainty_approximate": approximate,
        "self_certainty_reason": certainty_reason,
        "format_ok": format_error is None,
        "format_error": format_error,
    }
