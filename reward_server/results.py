"""What the service returns for a batch, and its JSON wire form.

The wire form is the schema of :class:`reward_server.protocol.RewardResponse` (which the
OpenAPI document shows), but it is built as plain dicts and encoded by orjson: building a
pydantic model per item and per component cost several times the scoring itself on large
batches. ``tests/api`` validates real responses against the pydantic schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from reward_contract import COMPONENT_NAMES
from reward_server.rewards import RewardBreakdown


class Certainty(NamedTuple):
    """Where an item's self-certainty came from, or why it is null (``CertaintyInfo``)."""

    source: str
    reason: str | None = None
    detail: str | None = None
    approximate: bool = False
    rationale_tokens: int | None = None


PROVIDED = Certainty("provided")
NO_CERTAINTY = Certainty("none")
FORMAT_FAILURE_CERTAINTY = Certainty("model", "format_failure")
# A trainer's value for a completion that failed its format is dropped (REWARD_CONTRACT.md §2).
PROVIDED_FORMAT_FAILURE = Certainty("provided", "format_failure")


def provided_certainty(format_ok: bool) -> Certainty:
    """A trainer-sent value's info: kept, or null with its reason after a format failure."""
    return PROVIDED if format_ok else PROVIDED_FORMAT_FAILURE


class ItemResult(NamedTuple):
    """One item's reward breakdown with its position, client id and certainty source."""

    index: int
    id: str | int | None
    breakdown: RewardBreakdown
    certainty: Certainty


@dataclass
class ScoredBatch:
    """Every item's result in input order, plus what the response reports beside them."""

    results: list[ItemResult]
    config_hash: str
    model: str | None
    total_seconds: float
    rules_seconds: float
    queue_seconds: float = 0.0
    forward_seconds: float = 0.0

    def as_wire(self) -> dict[str, Any]:
        """The ``RewardResponse`` body as plain JSON-ready values."""
        return {
            "results": [result_dict(result) for result in self.results],
            "config_hash": self.config_hash,
            "model": self.model,
            "timings": {
                "total_seconds": self.total_seconds,
                "rules_seconds": self.rules_seconds,
                "queue_seconds": self.queue_seconds,
                "forward_seconds": self.forward_seconds,
            },
        }


# Certainty sources repeat across a batch: one dict each, shared by every item that has it.
_CERTAINTY_DICTS = {
    value: value._asdict() for value in (PROVIDED, PROVIDED_FORMAT_FAILURE, NO_CERTAINTY)
}


def action_dict(kind: str, name: str | None, text: str | None) -> dict[str, str | None]:
    """The ``ActionModel`` wire form: ``name``/``text`` are null where the type has none."""
    return {
        "type": kind,
        "name": None if kind == "terminate" else name,
        "text": text if kind == "type_and_submit" else None,
    }


def result_dict(result: ItemResult) -> dict[str, Any]:
    """One ``RewardResult`` as plain values (field order as in the schema)."""
    breakdown = result.breakdown
    reason = breakdown.failure_reason
    kind = breakdown.action_type
    certainty = result.certainty
    return {
        "index": result.index,
        "id": result.id,
        "reward": breakdown.reward,
        "score": breakdown.score,
        "components": {name: getattr(breakdown, name) for name in COMPONENT_NAMES},
        "format_ok": reason is None,
        "format_error": (
            None if reason is None else {"reason": reason, "detail": breakdown.failure_detail}
        ),
        "action": (
            None
            if kind is None
            else action_dict(kind, breakdown.action_name, breakdown.action_text)
        ),
        "certainty": _CERTAINTY_DICTS.get(certainty) or certainty._asdict(),
    }


def json_bytes(value: Any) -> bytes:
    """``value`` as JSON; a lone surrogate (legal inside a JSON string, so possible in a
    well-formed completion's action) is written as its escape, e.g. ``\\ud800``."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return orjson.dumps(_printable(value))


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value
