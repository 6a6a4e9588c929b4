"""Value types of the reward core: actions, parse results, component breakdowns.

They are NamedTuples: immutable like frozen dataclasses, but built several times faster,
which matters at tens of thousands of items per second. The per-item path builds them by
field name through their generated ``__new__`` (``ParsedFields.__new__(ParsedFields,
rationale=..., ...)``): a class called with keywords packs them into a new dict on every
call, and that dict would cost more than the whole tuple.
"""

from __future__ import annotations

from typing import NamedTuple


class Action(NamedTuple):
    """A shopping action (REWARD_CONTRACT.md §1). ``name``/``text`` are "" when absent."""

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


class ParsedFields(NamedTuple):
    """A completion that passed the format check, flat, as batch scoring reads it: the
    action's fields ("" when absent) and the rationale's span (see
    :class:`ParsedCompletion`), which is None only when it was not asked for."""

    rationale: str
    action_type: str
    name: str
    text: str
    rationale_span: tuple[int, int] | None


class FormatFailure(NamedTuple):
    """Why a completion fails the format reward; ``reason`` is machine-readable."""

    reason: str
    detail: str


class ActionReward(NamedTuple):
    """The three parts of the hierarchical action reward (REWARD_CONTRACT.md §3)."""

    type: float
    attribute: float
    value: float

    @property
    def total(self) -> float:
        return self.type + self.attribute + self.value


class RewardBreakdown(NamedTuple):
    """Every component of one item's reward (REWARD_CONTRACT.md §5), and its parse outcome.

    The outcome is stored flat (strings, numbers and an exact tuple): a batch keeps one of
    these per item, and CPython's collector re-walks every surviving tuple *subclass* at
    each full collection, so one per item instead of three or four (Action,
    ParsedCompletion, FormatFailure) is a measurable share of a large batch's time.
    ``parsed``, ``failure`` and ``action`` rebuild the typed views on access. The parse
    outcome's fields are None where it does not apply (the action's when the format
    failed, the failure's when it passed).
    """

    reward: float
    score: float
    format: float
    type: float
    attribute: float
    value: float
    self_certainty: float | None = None
    rationale: str | None = None
    action_type: str | None = None
    action_name: str | None = None
    action_text: str | None = None
    rationale_span: tuple[int, int] | None = None
    failure_reason: str | None = None
    failure_detail: str | None = None

    @property
    def format_ok(self) -> bool:
        return self.failure_reason is None

    @property
    def action(self) -> Action | None:
        """The predicted action, or None when the format failed."""
        if self.action_type is None:
            return None
        return Action(self.action_type, self.action_name or "", self.action_text or "")

    @property
    def parsed(self) -> ParsedCompletion | None:
        action = self.action
        if action is None:
            return None
        return ParsedCompletion(self.rationale or "", action, self.rationale_span or (0, 0))

    @property
    def failure(self) -> FormatFailure | None:
        if self.failure_reason is None:
            return None
        return FormatFailure(self.failure_reason, self.failure_detail or "")
