"""Python client of the Shop-R1 reward service (httpx; no torch, no fastapi).

``RewardClient`` (blocking) and ``AsyncRewardClient`` (asyncio) score batches through
``POST /v1/rewards`` with round-robin and failover over several base URLs, bounded
concurrency, a deadline per call (also sent as ``X-Request-Timeout``), retries with capped
full-jitter backoff on transport errors, 408, 429 and 5xx only (honouring ``Retry-After``),
chunking of large batches with order kept, and checks that every reply lines up with its
request. Errors form a small tree under :class:`RewardClientError`; each says what to do.
"""

from __future__ import annotations

from client._async import AsyncRewardClient
from client._base import DEFAULT_URL
from client._errors import (
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    FieldError,
    OverloadedError,
    PayloadTooLargeError,
    ResponseMismatchError,
    RewardClientError,
    ServerError,
    TransportError,
)
from client._policy import RetryPolicy
from client._sync import RewardClient
from client._types import (
    COMPONENT_NAMES,
    CertaintyInfo,
    Components,
    FormatError,
    RewardBatch,
    RewardResult,
    ScoreItem,
)

__all__ = [
    "COMPONENT_NAMES",
    "DEFAULT_URL",
    "AsyncRewardClient",
    "AuthenticationError",
    "BadRequestError",
    "CertaintyInfo",
    "Components",
    "DeadlineExceededError",
    "FieldError",
    "FormatError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ResponseMismatchError",
    "RetryPolicy",
    "RewardBatch",
    "RewardClient",
    "RewardClientError",
    "RewardResult",
    "ScoreItem",
    "ServerError",
    "TransportError",
]
