"""Value types and errors shared by the scorer and its callers; imports no torch.

The service builds one :class:`CertaintyRequest` per item whose self-certainty comes from
the model, and gets back one :class:`CertaintyResult` per request, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reward_contract import CertaintyKind


@dataclass(frozen=True, slots=True)
class CertaintyRequest:
    """One completion to score with the served model (REWARD_CONTRACT.md §4).

    Exactly one of ``prompt_text`` (already chat-templated), ``prompt_messages`` (chat
    messages, rendered with the model's chat template and the generation prompt) or
    ``prompt_ids`` may be set; none means the completion is scored on its own.
    ``rationale_span`` is the half-open character span ``[start, end)`` of the rationale's
    string value inside ``completion_text`` (inside the quotes).
    """

    completion_text: str
    rationale_span: tuple[int, int]
    prompt_text: str | None = None
    prompt_messages: tuple[tuple[str, str], ...] | None = None
    prompt_ids: tuple[int, ...] | None = None
    completion_ids: tuple[int, ...] | None = None
    kind: CertaintyKind = "kl_uniform"
    temperature: float = 1.0


@dataclass(slots=True)
class CertaintyResult:
    """Self-certainty of one completion, or ``value=None`` with a machine-readable reason.

    Reasons: ``too_long`` (prompt + completion exceed the model context), ``empty_span``
    (no completion token overlaps the rationale), ``invalid_request`` (span outside the
    text, a token id outside the vocabulary, a text that is not valid Unicode, two prompt
    forms, unknown kind, temperature <= 0: input that can never succeed), ``span_mismatch``
    (``completion_ids`` do not decode to ``completion_text`` up to the span end),
    ``non_finite`` (the value overflowed, e.g. a temperature so small that the scaled
    logits are infinite), ``backend_error`` (the model failed; the detail says how).
    """

    value: float | None
    reason: str | None = None
    detail: str | None = None
    rationale_tokens: int = 0
    total_tokens: int = 0
    queue_seconds: float = 0.0
    forward_seconds: float = 0.0
    approximate: bool = False


@dataclass(slots=True)
class BatchStats:
    """What one backend batch did, for telemetry."""

    items: int
    tokens: int
    forward_seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class ScorerError(Exception):
    """Base class of scorer failures that concern a whole request."""


class ScorerOverloaded(ScorerError):
    """The scorer queue is full; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScorerRequestTooLarge(ScorerError):
    """One call holds more items than the queue can ever take (``max_queue_items``):
    retrying cannot help; the caller must split it."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class ScorerNotReady(ScorerError):
    """The model is not loaded (or is loading)."""


class ScorerDeadlineExceeded(ScorerError):
    """The request's deadline passed while its items were queued."""
