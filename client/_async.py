"""``AsyncRewardClient``: the asyncio client (bound to the event loop it is first used on)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from client._batching import Chunk, assemble, parse_chunk, plan_chunks, request_body
from client._calls import CallState
from client._policy import Deadline, EndpointPool, RetryPolicy, split_urls
from client._sync import DEFAULT_URL
from client._types import RewardBatch, ScoreItem, as_score_item
from reward_contract import CertaintySource


class AsyncRewardClient:
    """Asyncio twin of :class:`~client.RewardClient` (same arguments and behaviour).

    The chunks of one call are sent concurrently; across all calls at most
    ``max_concurrency`` requests are in flight (an ``asyncio.Semaphore``), so thousands of
    concurrent ``score`` calls queue here instead of storming the server. httpx binds its
    pool to one event loop: create one client per loop (the trainer adapters do).

    Example::

        async with AsyncRewardClient(["http://a:8000", "http://b:8000"]) as client:
            batch = await client.score(items, self_certainty_source="none")
    """

    def __init__(
        self,
        base_urls: str | list[str] = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        chunk_size: int = 512,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.pool = EndpointPool(split_urls(base_urls))
        self.api_key = api_key
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(max_concurrency)
        limits = httpx.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )
        self._http = httpx.AsyncClient(limits=limits, transport=transport)

    async def score(
        self,
        items: Iterable[ScoreItem | Mapping[str, Any]],
        *,
        config: Mapping[str, Any] | None = None,
        self_certainty_source: CertaintySource | None = None,
        timeout: float | None = None,
    ) -> RewardBatch:
        """Score ``items`` (``POST /v1/rewards``); results in the same order; all-or-nothing."""
        items = [as_score_item(item) for item in items]
        if not items:
            return RewardBatch(results=[], config_hash=None, model=None)
        deadline = Deadline(timeout or self.timeout)

        async def run(chunk: Chunk) -> Any:
            body = request_body(chunk, config, self_certainty_source)
            url, payload = await self._request("POST", "/v1/rewards", body, deadline, chunk.start)
            return parse_chunk(chunk, payload, url)

        tasks = [asyncio.ensure_future(run(c)) for c in plan_chunks(items, self.chunk_size)]
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
        body: dict[str, Any] = {"items": [dict(item) for item in items]}
        if config:
            body["config"] = dict(config)
        deadline = Deadline(timeout or self.timeout)
        return (await self._request("POST", "/v1/evaluate", body, deadline))[1]

    async def server_config(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/config`` of one server: config, hash, model and limits."""
        deadline = Deadline(timeout or self.timeout)
        return (await self._request("GET", "/v1/config", None, deadline))[1]

    async def wait_ready(self, timeout: float = 180.0, interval: float = 0.5) -> None:
        """Wait until every base URL answers ``/readyz`` with 200 (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        pending = list(self.pool.urls)
        while pending:
            for url in list(pending):
                try:
                    if (await self._http.get(url + "/readyz", timeout=2)).status_code == 200:
                        pending.remove(url)
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(pending)}")
            if pending:
                await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, body: Any, deadline: Deadline, offset: int = 0
    ) -> tuple[str, Any]:
        call = CallState(
            self.pool, self.retry, deadline, self.api_key, self.connect_timeout, offset
        )
        while True:
            url, wait = call.plan()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(max(0.0, deadline.remaining())):
                    await self._slots.acquire()
            except TimeoutError:
                raise call.deadline_error("every connection slot stayed busy") from None
            if deadline.expired():
                self._slots.release()
                raise call.deadline_error("every connection slot stayed busy")
            try:
                response = await self._http.request(
                    method,
                    url + path,
                    json=body,
                    headers=call.headers(),
                    timeout=call.attempt_timeout(),
                )
            except httpx.TransportError as exc:
                call.transport_failed(url, exc)
                continue
            finally:
                self._slots.release()
            payload = call.handle(url, response)
            if payload is not None:
                return url, payload
