"""Value types of the reward core: actions, parse results, component breakdowns.

They are NamedTuples: immutable like frozen dataclasses, but built several times faster,
which matters at tens of thousands of items per second.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

ActionType = Literal["click", "type_and_submit", "terminate"]
ACTION_TYPES: tuple[str, ...] = ("click", "type_and_submit", "terminate")


class Action(NamedTuple):
    """A shopping action (REWARD_SPEC section 1). ``name``/``text`` are "" when absent."""

    type: str
    name: str = ""
    text: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"type": self.type}
        if self.type != "terminate":
            out["name"] = self.name
        if self.type == "type_and_submit":
            out["text"] = self.text
        return out


class ParsedCompletion(NamedTuple):
    """A completion that passed the format check.

    ``rationale_span`` is the half-open character span of the rationale's string value
    inside the completion text, quotes excluded (what self-certainty is computed over).
    """

    rationale: str
    action: Action
    rationale_span: tuple[int, int]


class FormatFailure(NamedTuple):
    """Why a completion fails the format reward; ``reason`` is machine-readable."""

    reason: str
    detail: str


class ActionReward(NamedTuple):
    """The three parts of the hierarchical action reward (REWARD_SPEC section 3)."""

    type: float
    attribute: float
    value: float

    @property
    def total(self) -> float:
        return self.type + self.attribute + self.value


class RewardBreakdown(NamedTuple):
    """Every component of one item's reward (REWARD_SPEC section 5)."""

    reward: float
    score: float
    format: float
    type: float
    attribute: float
    value: float
    self_certainty: float | None
    parsed: ParsedCompletion | None
    failure: FormatFailure | None

    @property
    def format_ok(self) -> bool:
        return self.failure is None
