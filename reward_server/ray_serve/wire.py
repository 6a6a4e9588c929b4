"""What the ingress and the model replicas exchange besides requests and results.

A scorer failure that concerns a whole call (queue full, too large for the queue, not
ready, deadline) comes back as a :class:`ModelFailure` value rather than as a raised
exception: Ray wraps a raised exception in its own type and drops attributes such as
``retry_after`` or ``limit``, and a value keeps the status the client must see (429, 413,
503, 504) exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reward_server.certainty.types import (
    ScorerDeadlineExceeded,
    ScorerError,
    ScorerNotReady,
    ScorerOverloaded,
    ScorerRequestTooLarge,
)

FailureKind = Literal["overloaded", "too_large", "not_ready", "deadline"]


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """A call the model replica refused as a whole."""

    kind: FailureKind
    message: str
    retry_after: float = 1.0
    limit: int = 0  # too_large: the most items one call may hold

    @classmethod
    def of(cls, exc: ScorerError) -> ModelFailure:
        if isinstance(exc, ScorerOverloaded):
            return cls("overloaded", str(exc), exc.retry_after)
        if isinstance(exc, ScorerRequestTooLarge):
            return cls("too_large", str(exc), limit=exc.limit)
        if isinstance(exc, ScorerDeadlineExceeded):
            return cls("deadline", str(exc))
        return cls("not_ready", str(exc))

    def as_error(self) -> ScorerError:
        """The exception the single-process scorer would have raised."""
        if self.kind == "overloaded":
            return ScorerOverloaded(self.message, retry_after=self.retry_after)
        if self.kind == "too_large":
            return ScorerRequestTooLarge(self.message, limit=self.limit)
        if self.kind == "deadline":
            return ScorerDeadlineExceeded(self.message)
        return ScorerNotReady(self.message)


@dataclass(frozen=True, slots=True)
class ModelState:
    """One model replica as it reports itself: which weights it serves and where.

    ``generation`` orders reloads (0: the weights it started with); ``error`` is set when
    the reload it was just asked for failed (its weights are then unchanged);
    ``in_flight`` counts the scoring calls it holds."""

    replica: str
    node_id: str
    model_name: str
    ready: bool
    generation: int = 0
    model_dir: str | None = None
    error: str | None = None
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    """Where one replica serves its Prometheus metrics (an ``http_sd`` target)."""

    address: str
    deployment: str
    replica: str
    node_id: str

    def as_sd(self, application: str) -> dict[str, object]:
        return {
            "targets": [self.address],
            "labels": {
                "application": application,
                "deployment": self.deployment,
                "replica": self.replica,
                "ray_node_id": self.node_id,
            },
        }
