"""What a scoring engine provides (:class:`ScoringBackend`) and the pieces every engine
shares around its forward pass: the batch result contract, the value check, the warm-up.

A backend is synchronous and used from one thread at a time (the scorer's model thread);
``encode`` may run on another thread (the scorer's tokeniser thread) concurrently with
``score_encoded``. This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, cast, runtime_checkable

from reward_server.certainty.encoding import EncodedItem, failure
from reward_server.certainty.model_loading import ModelLoadError
from reward_server.certainty.types import BatchStats, CertaintyRequest, CertaintyResult


@runtime_checkable
class ScoringBackend(Protocol):
    """A model that scores encoded items exactly (REWARD_CONTRACT.md §4)."""

    @property
    def model_name(self) -> str: ...

    @property
    def vocab_size(self) -> int:
        """V: the width of a logits row, padding rows included."""
        ...

    def encode(self, request: CertaintyRequest) -> EncodedItem | CertaintyResult:
        """Tokenise and validate; a result is a per-item failure (never raises)."""
        ...

    def score_encoded(
        self, items: Sequence[EncodedItem | CertaintyResult]
    ) -> tuple[list[CertaintyResult], BatchStats]:
        """One result per item, in order (failures pass through), and the batch's stats."""
        ...

    def warmup(self) -> None:
        """Check the model end to end; raise :class:`ModelLoadError` if it cannot score."""
        ...

    def close(self) -> None:
        """Release engine processes or device memory; no batch runs afterwards."""
        ...


Loader = Callable[[str], ScoringBackend]
"""Builds a backend from a model setting (``"embedded"`` or a directory); runs in a
worker thread."""


def score_requests(
    backend: ScoringBackend, requests: Sequence[CertaintyRequest]
) -> list[CertaintyResult]:
    """Encode and score ``requests`` synchronously; one result per request, in order."""
    results, _ = backend.score_encoded([backend.encode(r) for r in requests])
    return results


class ScoringForTestsAndBenches:
    """``score_batch``: a backend scored directly, without the async scorer's queue, by the
    tests and the benchmarks only. The service never calls it: it scores through
    :class:`~reward_server.certainty.scorer.CertaintyScorer`, which encodes and scores on
    separate threads."""

    def score_batch(self, requests: Sequence[CertaintyRequest]) -> list[CertaintyResult]:
        """Encode and score ``requests`` synchronously; one result per request, in order."""
        return score_requests(cast(ScoringBackend, self), requests)


def certainty_result(item: EncodedItem, value: float) -> CertaintyResult:
    """The result of a scored item; a value that overflowed is never returned as one."""
    if not math.isfinite(value):
        return failure(
            "non_finite",
            f"the value is {value} (temperature {item.temperature:g} overflows the logits?)",
            item.total_tokens,
        )
    return CertaintyResult(
        value=value, rationale_tokens=len(item.positions), total_tokens=item.total_tokens
    )


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


def check_scores(backend: ScoringBackend) -> None:
    """Score :func:`warmup_request`; raise :class:`ModelLoadError` if it has no value."""
    result = score_requests(backend, [warmup_request()])[0]
    if result.value is None:
        raise ModelLoadError(f"{backend.model_name}: warm-up failed: {result.detail}")
