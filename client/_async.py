"""``AsyncRewardClient``: the asyncio client (bound to the event loop it is first used on)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from client import _steps
from client._base import CONFIG_PATH, EVALUATE_PATH, REWARDS_PATH, BaseRewardClient
from client._batching import Chunk, assemble, parse_chunk
from client._policy import Deadline
from client._types import RewardBatch, ScoreItem
from reward_contract import CertaintySource


class AsyncRewardClient(BaseRewardClient):
    """Asyncio twin of :class:`~client.RewardClient` (same arguments and behaviour;
    see :class:`BaseRewardClient`).

    The chunks of one call are sent concurrently; across all calls at most
    ``max_concurrency`` requests are in flight (an ``asyncio.Semaphore``), so thousands of
    concurrent ``score`` calls queue here instead of storming the server. httpx binds its
    pool to one event loop: create one client per loop (the trainer adapters do).

    Example::

        async with AsyncRewardClient(["http://a:8000", "http://b:8000"]) as client:
            batch = await client.score(items, self_certainty_source="none")
    """

    def _open(self, limits: httpx.Limits, transport: Any) -> httpx.AsyncClient:
        self._slots = asyncio.Semaphore(self.max_concurrency)
        return httpx.AsyncClient(limits=limits, transport=transport)

    async def score(
        self,
        items: Iterable[ScoreItem | Mapping[str, Any]],
        *,
        config: Mapping[str, Any] | None = None,
        self_certainty_source: CertaintySource | None = None,
        timeout: float | None = None,
        profile: str | None = None,
    ) -> RewardBatch:
        """Score ``items`` (``POST /v1/rewards``); results in the same order; all-or-nothing.
        ``profile`` and ``config`` as in :meth:`RewardClient.score`."""
        plan = self._plan_score(items, config, self_certainty_source, timeout, profile)
        if plan is None:
            return self._empty_batch()

        async def run(chunk: Chunk) -> Any:
            url, payload = await self._request(
                "POST", REWARDS_PATH, plan.body(chunk), plan.deadline, chunk.start
            )
            return parse_chunk(chunk, payload, url)

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in plan.chunks]
        try:
            return assemble(list(await asyncio.gather(*tasks)))
        finally:
            for task in tasks:  # one chunk failed: do not leave the others running
                task.cancel()

    async def evaluate(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        config: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """REWARD_CONTRACT.md §6 metrics of ``{"completion", "ground_truth"}`` pairs."""
        body = self._evaluate_body(items, config)
        return (await self._request("POST", EVALUATE_PATH, body, self._deadline(timeout)))[1]

    async def server_config(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/config`` of one server: version, config, hash, model and limits."""
        return (await self._request("GET", CONFIG_PATH, None, self._deadline(timeout)))[1]

    async def wait_ready(self, timeout: float = 180.0, interval: float = 0.5) -> None:
        """Wait until every base URL answers ``/readyz`` with 200 (raises TimeoutError)."""
        steps = _steps.ready_steps(self.pool.urls, timeout, interval)
        await _steps.drive_async(steps, self._perform)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- I/O of the shared request loop (client._steps) ----------------------------------
    async def _request(
        self, method: str, path: str, body: Any, deadline: Deadline, offset: int = 0
    ) -> tuple[str, Any]:
        steps = _steps.request_steps(self._call(deadline, offset), method, path, body)
        return await _steps.drive_async(steps, self._perform)

    async def _perform(self, step: _steps.Step) -> _steps.Outcome:
        """One step, on the event loop."""
        match step:
            case _steps.Sleep(seconds):
                if seconds > 0:
                    await asyncio.sleep(seconds)
            case _steps.Acquire(timeout):
                try:
                    async with asyncio.timeout(timeout):
                        await self._slots.acquire()
                except TimeoutError:
                    return False
                return True
            case _steps.Release():
                self._slots.release()
            case _steps.Send():
                try:
                    return await self._http.request(**step.request_args())
                except httpx.TransportError as exc:
                    return exc
                finally:
                    if step.holds_slot:
                        self._slots.release()
        return None
