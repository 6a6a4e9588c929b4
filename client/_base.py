"""What the blocking and the asyncio client share: settings, request building and the
reading of replies. Each client keeps only its I/O (sending, sleeping, waiting for a
connection slot): the request loop and the readiness wait are :mod:`client._steps`'s, the
retry decisions :class:`~client._calls.CallState`'s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from client._batching import Chunk, plan_chunks, request_body
from client._calls import CallState
from client._policy import Deadline, EndpointPool, RetryPolicy, split_urls
from client._types import RewardBatch, ScoreItem, as_score_item
from reward_contract import CertaintySource

DEFAULT_URL = "http://127.0.0.1:8000"
REWARDS_PATH = "/v1/rewards"
EVALUATE_PATH = "/v1/evaluate"
CONFIG_PATH = "/v1/config"


@dataclass(frozen=True)
class ScorePlan:
    """One ``score`` call: its chunks, their shared deadline and per-request options."""

    chunks: list[Chunk]
    deadline: Deadline
    config: Mapping[str, Any] | None
    self_certainty_source: CertaintySource | None
    profile: str | None = None

    def body(self, chunk: Chunk) -> dict[str, Any]:
        return request_body(chunk, self.config, self.self_certainty_source, self.profile)


class BaseRewardClient:
    """Settings and request building of :class:`~client.RewardClient` and
    :class:`~client.AsyncRewardClient`.

    Args:
        base_urls: one URL, a list, or a comma-separated string; requests rotate over them
            round-robin and fail over to the next when one is down or overloaded.
        api_key: sent as ``Authorization: Bearer <key>`` when the server requires one.
        timeout: default deadline of a call in seconds (all chunks and retries included);
            sent as ``X-Request-Timeout`` so the server gives up at the same time.
        chunk_size: items per HTTP request; larger batches are split and reassembled in order.
        max_concurrency: requests in flight at once from this client (pool size too).
        retry: the :class:`RetryPolicy` (attempts, backoff, Retry-After cap).
        connect_timeout: seconds to wait for a connection, within the call's deadline.
        transport: an httpx transport to use instead of the network (tests): a
            ``BaseTransport`` for the blocking client, an ``AsyncBaseTransport`` for asyncio.
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
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
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
        # One pooled connection per request the client may have in flight.
        limits = httpx.Limits(max_connections=max_concurrency,
                              max_keepalive_connections=max_concurrency)
        self._http = self._open(limits, transport)

    def _open(self, limits: httpx.Limits, transport: Any) -> Any:
        """The httpx client (blocking or asyncio) and the slots bounding concurrency."""
        raise NotImplementedError

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline(timeout or self.timeout)

    def _plan_score(
        self,
        items: Iterable[ScoreItem | Mapping[str, Any]],
        config: Mapping[str, Any] | None,
        self_certainty_source: CertaintySource | None,
        timeout: float | None,
        profile: str | None = None,
    ) -> ScorePlan | None:
        """The chunks to send for ``items``, or None when there is nothing to score."""
        checked = [as_score_item(item) for item in items]
        if not checked:
            return None
        return ScorePlan(plan_chunks(checked, self.chunk_size), self._deadline(timeout),
                         config, self_certainty_source, profile)

    @staticmethod
    def _empty_batch() -> RewardBatch:
        return RewardBatch(results=[], config_hash=None, model=None)

    @staticmethod
    def _evaluate_body(
        items: Iterable[Mapping[str, Any]], config: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"items": [dict(item) for item in items]}
        if config:
            body["config"] = dict(config)
        return body

    def _call(self, deadline: Deadline, item_offset: int = 0) -> CallState:
        return CallState(
            self.pool, self.retry, deadline, self.api_key, self.connect_timeout, item_offset
        )
