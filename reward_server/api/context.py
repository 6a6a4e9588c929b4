"""The typed bundle of serving objects that the app factory builds once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reward_server.config import ServerSettings
from reward_server.service import RewardService

if TYPE_CHECKING:
    from reward_server.certainty.scorer_protocol import Scorer

log = logging.getLogger(__name__)

DEADLINE_HEADER = "x-request-timeout"


@dataclass
class AppContext:
    settings: ServerSettings
    service: RewardService
    scorer: Scorer | None
    load_error: str | None = None
    _load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def deadline_from(self, headers: Mapping[str, str]) -> float:
        """Absolute ``time.monotonic()`` deadline from the ``X-Request-Timeout`` header
        (seconds), capped by and defaulting to the server's default timeout."""
        limit = self.settings.default_timeout_seconds
        raw = headers.get(DEADLINE_HEADER)
        if raw is not None:
            from reward_server.api.errors import ApiError

            try:
                seconds = float(raw)
            except ValueError:
                raise ApiError("X-Request-Timeout must be seconds", DEADLINE_HEADER) from None
            if not 0 < seconds < float("inf"):
                raise ApiError("X-Request-Timeout must be positive", DEADLINE_HEADER)
            limit = min(limit, seconds)
        return time.monotonic() + limit

    async def wait_ready(self, deadline: float) -> None:
        """Return once the service can score, waiting for a model that is still loading
        until ``deadline`` (``time.monotonic()``). Raises ``NotReady`` (503): at once with
        the error when the load failed, with Retry-After when the deadline passes first."""
        from reward_server.api.errors import NotReady

        while not self.service.ready:
            if self.load_error:
                raise NotReady(f"model failed to load: {self.load_error}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady("the scoring model is still loading", retry_after=5)
            task = self._load_task
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=remaining)  # never cancels the load
            else:  # not started yet, or a reload in progress: look again shortly
                await asyncio.sleep(min(remaining, 0.05))

    async def start(self) -> None:
        """Load the model in the background so probes answer while it loads."""
        if self.scorer is not None:
            self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        assert self.scorer is not None
        try:
            await self.scorer.start()
            log.info("scoring model %s ready", self.scorer.model_name)
        except Exception as exc:  # reported by /healthz and /readyz, and logged
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the scoring model failed to load")

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.scorer is not None:
            await self.scorer.stop()
