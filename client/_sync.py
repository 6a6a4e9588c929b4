"""``RewardClient``: the blocking client (thread-safe; chunks are sent from a thread pool)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import httpx

from client import _steps
from client._base import CONFIG_PATH, DEFAULT_URL, EVALUATE_PATH, REWARDS_PATH, BaseRewardClient
from client._batching import Chunk, assemble, parse_chunk
from client._policy import Deadline
from client._types import RewardBatch, ScoreItem
from reward_contract import CertaintySource

__all__ = ["DEFAULT_URL", "RewardClient"]


class _Abandoned(Exception):
    """Another chunk of the same call failed for good: this chunk's answer is not needed."""


_NEVER = threading.Event()  # the stop signal of a call that is not split into chunks


class RewardClient(BaseRewardClient):
    """Blocking client of the Shop-R1 reward service (arguments: :class:`BaseRewardClient`).

    Example::

        with RewardClient("http://127.0.0.1:8000") as client:
            batch = client.score([{"completion": text, "ground_truth": {"type": "terminate"}}])
            batch[0].reward, batch[0].components.format
    """

    def _open(self, limits: httpx.Limits, transport: Any) -> httpx.Client:
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        return httpx.Client(limits=limits, transport=transport)

    # -- public API -----------------------------------------------------------------------
    def score(
        self,
        items: Iterable[ScoreItem | Mapping[str, Any]],
        *,
        config: Mapping[str, Any] | None = None,
        self_certainty_source: CertaintySource | None = None,
        timeout: float | None = None,
        profile: str | None = None,
    ) -> RewardBatch:
        """Score ``items`` (``POST /v1/rewards``); results come back in the same order.

        ``profile`` names a reward profile (``paper``, ``binary``, ...) that replaces the
        server's for this call; ``config`` overrides apply on top of it.

        Raises a :class:`~client.RewardClientError` subclass when any chunk fails: the
        batch is all-or-nothing, never partly zero.
        """
        plan = self._plan_score(items, config, self_certainty_source, timeout, profile)
        if plan is None:
            return self._empty_batch()

        stop = threading.Event()

        def run(chunk: Chunk) -> Any:
            url, payload = self._request(
                "POST", REWARDS_PATH, plan.body(chunk), plan.deadline, chunk.start, stop
            )
            return parse_chunk(chunk, payload, url)

        if len(plan.chunks) == 1:
            return assemble([run(plan.chunks[0])])
        workers = min(self.max_concurrency, len(plan.chunks))
        with ThreadPoolExecutor(workers, thread_name_prefix="reward-client") as executor:
            futures = [executor.submit(run, chunk) for chunk in plan.chunks]
            try:
                for future in as_completed(futures):
                    future.result()  # the first chunk to fail, whichever it is, raises here
                return assemble([future.result() for future in futures])
            finally:
                # One chunk failed: start none of those still queued, and stop the running
                # ones' retries, as the asyncio client cancels its tasks; leaving the pool
                # waits only for requests already on the wire.
                stop.set()
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
        body = self._evaluate_body(items, config)
        return self._request("POST", EVALUATE_PATH, body, self._deadline(timeout))[1]

    def server_config(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/config`` of one server: version, config, hash, model and limits."""
        return self._request("GET", CONFIG_PATH, None, self._deadline(timeout))[1]

    def wait_ready(self, timeout: float = 180.0, interval: float = 0.5) -> None:
        """Block until every base URL answers ``/readyz`` with 200 (raises TimeoutError)."""
        _steps.drive(_steps.ready_steps(self.pool.urls, timeout, interval), self._perform)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- I/O of the shared request loop (client._steps) ----------------------------------
    def _request(
        self, method: str, path: str, body: Any, deadline: Deadline, offset: int = 0,
        stop: threading.Event = _NEVER,
    ) -> tuple[str, Any]:
        steps = _steps.request_steps(self._call(deadline, offset), method, path, body)
        return _steps.drive(steps, lambda step: self._perform(step, stop))

    def _perform(self, step: _steps.Step, stop: threading.Event = _NEVER) -> _steps.Outcome:
        """One step, blocking; a set ``stop`` abandons the call at its next wait."""
        match step:
            case _steps.Sleep(seconds):
                if stop.wait(seconds) if seconds > 0 else stop.is_set():
                    raise _Abandoned
            case _steps.Acquire(timeout):
                return self._slots.acquire(timeout=timeout)
            case _steps.Release():
                self._slots.release()
            case _steps.Send():
                try:
                    return self._http.request(**step.request_args())
                except httpx.TransportError as exc:
                    return exc
                finally:
                    if step.holds_slot:
                        self._slots.release()
        return None
