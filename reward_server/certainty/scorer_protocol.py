"""The seam above the engines: what the service and the app need of a self-certainty
scorer, whichever process runs the model.

:class:`~reward_server.certainty.scorer.CertaintyScorer` scores in this process;
:class:`~reward_server.ray_serve.remote_scorer.RemoteCertaintyScorer` scores through the
model deployment of a Ray Serve application. Both declare that they implement
:class:`Scorer`, so a checker holds them to it; :mod:`~reward_server.service` and
:mod:`~reward_server.api` type their scorer as this protocol only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reward_server.certainty.types import CertaintyRequest, CertaintyResult


class Scorer(Protocol):
    """An async self-certainty scorer (REWARD_CONTRACT.md §4) with a lifecycle."""

    @property
    def ready(self) -> bool:
        """Whether :meth:`score` can answer now (the model is loaded and warm)."""
        ...

    @property
    def model_name(self) -> str:
        """The model that scores (before it is loaded: the model setting)."""
        ...

    async def start(self) -> None:
        """Load (or reach) the model; raises when it cannot be loaded."""
        ...

    async def stop(self) -> None:
        """Stop scoring; work still queued fails with ``ScorerNotReady``."""
        ...

    async def score(
        self, requests: Sequence[CertaintyRequest], deadline: float | None = None
    ) -> list[CertaintyResult]:
        """One result per request, in order. ``deadline`` is an absolute
        ``time.monotonic()``; a call refused as a whole raises a ``ScorerError``
        (overloaded, too large, not ready, deadline passed), a per-item problem is a
        result with ``value=None`` and a reason."""
        ...

    async def reload(self, model_dir: str) -> None:
        """Swap in the weights of ``model_dir`` without a restart; ValueError (or
        ``ModelLoadError``) names why a directory is refused."""
        ...


__all__ = ["Scorer"]
