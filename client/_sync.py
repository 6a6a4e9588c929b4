"""``RewardClient``: the blocking client (thread-safe; chunks are sent from a thread pool)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from client._batching import Chunk, assemble, parse_chunk, plan_chunks, request_body
from client._calls import CallState
from client._policy import Deadline, EndpointPool, RetryPolicy, split_urls
from client._types import RewardBatch, ScoreItem, as_score_item
from reward_contract import CertaintySource

DEFAULT_URL = "http://127.0.0.1:8000"


class RewardClient:
    """Blocking client of the Shop-R1 reward service.

    Args:
        base_urls: one URL, a list, or a comma-separated string; requests rotate over them
            round-robin and fail over to the next when one is down or overloaded.
        api_key: sent as ``Authorization: Bearer <key>`` when the server requires one.
        timeout: default deadline of a call in seconds (all chunks and retries included);
            sent as ``X-Request-Timeout`` so the server gives up at the same time.
        chunk_size: items per HTTP request; larger batches are split and reassembled in order.
        max_concurrency: requests in flight at once from this client (pool size too).
        retry: the :class:`RetryPolicy` (attempts, backoff, Retry-After cap).
        transport: an ``httpx.BaseTransport`` to use instead of the network (tests).

    Example::

        with RewardClient("http://127.0.0.1:8000") as client:
            batch = client.score([{"completion": text, "ground_truth": {"type": "terminate"}}])
            batch[0].reward, batch[0].components.format
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
        transport: httpx.BaseTransport | None = None,
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
        self._slots = threading.BoundedSemaphore(max_concurrency)
        limits = httpx.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )
        self._http = httpx.Client(limits=limits, transport=transport)

    # -- public API -----------------------------------------------------------------------
    def score(
        self,
        items: Iterable[ScoreItem | Mapping[str, Any]],
        *,
        config: Mapping[str, Any] | None = None,
        self_certainty_source: CertaintySource | None = None,
        timeout: float | None = None,
    ) -> RewardBatch:
        """Score ``items`` (``POST /v1/rewards``); results come back in the same order.

        Raises a :class:`~client.RewardClientError` subclass when any chunk fails: the
        batch is all-or-nothing, never partly zero.
        """
        items = [as_score_item(item) for item in items]
        if not items:
            return RewardBatch(results=[], config_hash=None, model=None)
        deadline = Deadline(timeout or self.timeout)
        chunks = plan_chunks(items, self.chunk_size)

        def run(chunk: Chunk) -> Any:
            body = request_body(chunk, config, self_certainty_source)
            url, payload = self._request("POST", "/v1/rewards", body, deadline, chunk.start)
            return parse_chunk(chunk, payload, url)

        if len(chunks) == 1:
            return assemble([run(chunks[0])])
        workers = min(self.max_concurrency, len(chunks))
        with ThreadPoolExecutor(workers, thread_name_prefix="reward-client") as executor:
            futures = [executor.submit(run, chunk) for chunk in chunks]
            try:
                return assemble([future.result() for future in futures])
            finally:  # one chunk failed: do not start the chunks still queued
                for future in futures:
                    future.cancel()

    def evaluate(
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
        return self._request("POST", "/v1/evaluate", body, Deadline(timeout or self.timeout))[1]

    def server_config(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/config`` of one server: config, hash, model and limits."""
        return self._request("GET", "/v1/config", None, Deadline(timeout or self.timeout))[1]

    def wait_ready(self, timeout: float = 180.0, interval: float = 0.5) -> None:
        """Block until every base URL answers ``/readyz`` with 200 (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        pending = list(self.pool.urls)
        while pending:
            for url in list(pending):
                try:
                    if self._http.get(url + "/readyz", timeout=2).status_code == 200:
                        pending.remove(url)
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(pending)}")
            if pending:
                time.sleep(interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one call with retries ------------------------------------------------------------
    def _request(
        self, method: str, path: str, body: Any, deadline: Deadline, offset: int = 0
    ) -> tuple[str, Any]:
        call = CallState(
            self.pool, self.retry, deadline, self.api_key, self.connect_timeout, offset
        )
        while True:
            url, wait = call.plan()
            if wait > 0:
                time.sleep(wait)
            if not self._slots.acquire(timeout=max(0.0, deadline.remaining())):
                raise call.deadline_error("every connection slot stayed busy")
            if deadline.expired():
                self._slots.release()
                raise call.deadline_error("every connection slot stayed busy")
            try:
                response = self._http.request(
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
