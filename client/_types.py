"""Typed inputs and results of the reward API (plain dataclasses; no pydantic needed).

The wire format is the server's ``POST /v1/rewards`` (``docs/REWARD_CONTRACT.md`` §4-5):
these classes mirror it field by field and are built from / turned into JSON dicts here.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward_contract import COMPONENT_NAMES, RULE_COMPONENTS

Prompt = str | Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class ScoreItem:
    """One completion to score.

    ``ground_truth`` is the shopper's real action: a dict like
    ``{"type": "click", "name": "buy_now"}`` or that as a JSON string. ``prompt`` (templated
    text, or chat messages) is needed only for the server's own self-certainty
    (``self_certainty_source="model"``); ``self_certainty`` is the trainer's value, used
    with ``self_certainty_source="provided"`` (see :mod:`trainer_adapter.certainty`).
    """

    completion: str
    ground_truth: Mapping[str, Any] | str
    prompt: Prompt | None = None
    id: str | int | None = None
    prompt_ids: Sequence[int] | None = None
    completion_ids: Sequence[int] | None = None
    self_certainty: float | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"completion": self.completion}
        body["ground_truth"] = (
            self.ground_truth if isinstance(self.ground_truth, str) else dict(self.ground_truth)
        )
        if self.prompt is not None:
            body["prompt"] = (
                self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
            )
        for name in ("id", "self_certainty"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        for name in ("prompt_ids", "completion_ids"):
            value = getattr(self, name)
            if value is not None:
                body[name] = [_token_id(token, name, i) for i, token in enumerate(value)]
        return body


def _token_id(token: Any, field: str, position: int) -> int:
    """A token id as a plain int (numpy and torch integers included); a float or bool is
    refused rather than truncated, since ``int(3.7)`` would score a different token."""
    if isinstance(token, bool):
        raise TypeError(f"{field}[{position}] must be an integer token id, not bool")
    try:
        return operator.index(token)
    except TypeError:
        raise TypeError(
            f"{field}[{position}] must be an integer token id, not {type(token).__name__}"
        ) from None


def as_score_item(item: ScoreItem | Mapping[str, Any]) -> ScoreItem:
    """Accept a :class:`ScoreItem` or a dict with the same keys."""
    if isinstance(item, ScoreItem):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"an item must be a ScoreItem or a dict, not {type(item).__name__}")
    return ScoreItem(**item)


@dataclass(frozen=True)
class Components:
    """The reward's parts (REWARD_CONTRACT.md §2-4); ``self_certainty`` is None if not computed."""

    format: float
    type: float
    attribute: float
    value: float
    self_certainty: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in COMPONENT_NAMES}


@dataclass(frozen=True)
class FormatError:
    """Why a completion failed the format check (``not_json``, ``extra_keys``, ...)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class CertaintyInfo:
    """Where the self-certainty came from, or why it is missing (``reason``)."""

    source: str
    reason: str | None = None
    detail: str | None = None
    approximate: bool = False
    rationale_tokens: int | None = None


_CERTAINTY_FIELDS = ("source", "reason", "detail", "approximate", "rationale_tokens")


def _known(data: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Only the fields this client knows: a newer server may add more (forward compatible)."""
    return {name: data[name] for name in names if name in data}


@dataclass(frozen=True)
class RewardResult:
    """One item's reward; ``index`` is its position in the caller's item list."""

    index: int
    id: str | int | None
    reward: float
    score: float
    components: Components
    format_ok: bool
    format_error: FormatError | None
    action: dict[str, Any] | None
    certainty: CertaintyInfo

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], index: int) -> RewardResult:
        error = data.get("format_error")
        parts = data["components"]
        certainty = data.get("certainty") or {"source": "none"}
        return cls(
            index=index,
            id=data.get("id"),
            reward=float(data["reward"]),
            score=float(data["score"]),
            components=Components(
                *(float(parts[name]) for name in RULE_COMPONENTS),
                self_certainty=None
                if parts.get("self_certainty") is None
                else float(parts["self_certainty"]),
            ),
            format_ok=bool(data["format_ok"]),
            format_error=FormatError(str(error["reason"]), str(error.get("detail", "")))
            if error
            else None,
            action=data.get("action"),
            certainty=CertaintyInfo(**_known(certainty, _CERTAINTY_FIELDS)),
        )


@dataclass(frozen=True)
class RewardBatch:
    """Every result of one :meth:`score` call, in the caller's order."""

    results: list[RewardResult]
    config_hash: str | None
    model: str | None
    server_seconds: float = 0.0
    urls: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.results)

    def __getitem__(self, index: int) -> RewardResult:
        return self.results[index]

    @property
    def rewards(self) -> list[float]:
        return [result.reward for result in self.results]

    @property
    def scores(self) -> list[float]:
        return [result.score for result in self.results]
