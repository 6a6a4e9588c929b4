"""Value types and errors shared by the scorer and its callers; imports no torch.

The service builds one :class:`CertaintyRequest` per item whose self-certainty comes from
the model, and gets back one :class:`CertaintyResult` per request, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reward_contract import CertaintyKind


@dataclass(frozen=True, slots=True)
class CertaintyRequest:
    """One completion to score with the served model (REWARD_SPEC section 4).

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

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> CertaintyRequest:
        """The request whose ``dataclasses.asdict`` went through JSON as ``fields`` (lists
        back into the tuples the request holds): how a request crosses to a process that
        runs another backend."""
        values = dict(fields)
        for key in ("rationale_span", "prompt_ids", "completion_ids"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if values.get("prompt_messages") is not None:
            values["prompt_messages"] = tuple(tuple(m) for m in values["prompt_messages"])
        return cls(**values)


@dataclass(slots=True)
class CertaintyResult:
    """Self-certainty of one completion, or ``value=None`` with a machine-readable reason.

    Reasons: ``too_long`` (prompt + completion exceed the model context), ``empty_span``
    (no completion token overlaps the rationale), ``backend_error`` (the detail says what),
    ``invalid_request`` (span outside the text, token id outside the vocabulary, two prompt
    forms, unknown kind, temperature <= 0), ``span_mismatch`` (``completion_ids`` do not
    decode to ``completion_text`` up to the span end).
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


class ScorerNotReady(ScorerError):
    """The model is not loaded (or is loading)."""


class ScorerDeadlineExceeded(ScorerError):
    """The request's deadline passed while its items were queued."""


def finish_batch(
    results: list[CertaintyResult | None],
    forward_seconds: float,
    tokens: int,
    extra: dict[str, float],
) -> tuple[list[CertaintyResult], BatchStats]:
    """Every slot filled (an invariant, never a short list), each stamped with the batch's
    forward time, and the batch's stats: what every backend returns from a batch."""
    out: list[CertaintyResult] = []
    for result in results:
        if result is None:
            raise RuntimeError("a backend batch left an item without a result")
        result.forward_seconds = forward_seconds
        out.append(result)
    return out, BatchStats(len(out), tokens, forward_seconds, extra)


def warmup_request() -> CertaintyRequest:
    """A short, known-good item every backend scores once before it reports ready."""
    rationale = "I look for a cheap lamp."
    text = '{"rationale": "' + rationale + '", "action": {"type": "terminate"}}'
    start = text.index(rationale)
    return CertaintyRequest(
        completion_text=text,
        rationale_span=(start, start + len(rationale)),
        prompt_text="Find a lamp.\n",
    )
