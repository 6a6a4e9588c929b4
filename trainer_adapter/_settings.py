"""Adapter configuration from environment variables, and the shared clients.

Trainers import an adapter module by path and call its function, so the adapter is the
entry point: it is the one place that reads ``os.environ`` (house habit 5). Variables:

=================================  =========================================================
``SHOP_R1_REWARD_URL``             base URL(s), comma-separated (default
                                   ``http://127.0.0.1:8000``); round-robin with failover
``SHOP_R1_API_KEY``                bearer key, when the server was started with one
``SHOP_R1_REWARD_TIMEOUT``         deadline of one scoring call in seconds (default 120)
``SHOP_R1_REWARD_CHUNK_SIZE``      items per HTTP request (default 512)
``SHOP_R1_REWARD_MAX_CONCURRENCY`` requests in flight per process (default 16)
``SHOP_R1_REWARD_MAX_ATTEMPTS``    attempts per request, retries included (default 5)
``SHOP_R1_SELF_CERTAINTY_SOURCE``  ``model`` / ``provided`` / ``none`` (default: the
                                   server's default: ``model`` when it has one)
``SHOP_R1_REWARD_CONFIG``          JSON object of per-request reward overrides, e.g.
                                   ``{"temperature": 0.6}``
``SHOP_R1_REWARD_BATCH_WAIT_MS``   verl per-sample coalescing window (default 5)
``SHOP_R1_REWARD_BATCH_MAX_ITEMS`` verl per-sample coalescing batch cap (default 256)
=================================  =========================================================

Variables are read when a client is first needed (not at import), and again whenever
they change, so a script may set them after importing the adapter.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from client import DEFAULT_URL, AsyncRewardClient, RetryPolicy, RewardClient

PREFIX = "SHOP_R1_"
SOURCES = ("model", "provided", "none")


@dataclass(frozen=True)
class AdapterSettings:
    """Everything an adapter needs to build its client and requests."""

    urls: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    chunk_size: int = 512
    max_concurrency: int = 16
    max_attempts: int = 5
    self_certainty_source: str | None = None
    config_json: str | None = None
    batch_wait_ms: float = 5.0
    batch_max_items: int = 256

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdapterSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value.strip() if value and value.strip() else None

        def number(name: str, default: float, kind: type = float) -> Any:
            raw = get(name)
            try:
                return kind(raw) if raw is not None else default
            except ValueError:
                raise ValueError(f"{PREFIX}{name}={raw!r} is not a {kind.__name__}") from None

        source = get("SELF_CERTAINTY_SOURCE")
        if source is not None and source not in SOURCES:
            raise ValueError(f"{PREFIX}SELF_CERTAINTY_SOURCE must be one of {SOURCES}")
        settings = cls(
            urls=get("REWARD_URL") or DEFAULT_URL,
            api_key=get("API_KEY"),
            timeout=number("REWARD_TIMEOUT", 120.0),
            chunk_size=number("REWARD_CHUNK_SIZE", 512, int),
            max_concurrency=number("REWARD_MAX_CONCURRENCY", 16, int),
            max_attempts=number("REWARD_MAX_ATTEMPTS", 5, int),
            self_certainty_source=source,
            config_json=get("REWARD_CONFIG"),
            batch_wait_ms=number("REWARD_BATCH_WAIT_MS", 5.0),
            batch_max_items=number("REWARD_BATCH_MAX_ITEMS", 256, int),
        )
        settings.config()  # fail early on bad JSON
        return settings

    def config(self) -> dict[str, Any] | None:
        """The per-request reward overrides (``SHOP_R1_REWARD_CONFIG``), if any."""
        if not self.config_json:
            return None
        try:
            value = json.loads(self.config_json)
        except ValueError as exc:
            raise ValueError(f"{PREFIX}REWARD_CONFIG is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{PREFIX}REWARD_CONFIG must be a JSON object")
        return value

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "timeout": self.timeout,
            "chunk_size": self.chunk_size,
            "max_concurrency": self.max_concurrency,
            "retry": RetryPolicy(max_attempts=self.max_attempts),
        }

    def score_kwargs(self) -> dict[str, Any]:
        return {"config": self.config(), "self_certainty_source": self.self_certainty_source}


_lock = threading.Lock()
_sync: dict[AdapterSettings, RewardClient] = {}
_LoopClient = tuple[AdapterSettings, AsyncRewardClient]
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
    weakref.WeakKeyDictionary()
)


def sync_client(settings: AdapterSettings) -> RewardClient:
    """The process-wide blocking client for ``settings`` (pooled connections reused)."""
    with _lock:
        if settings not in _sync:
            _sync[settings] = RewardClient(settings.urls, **settings.client_kwargs())
        return _sync[settings]


def async_client(settings: AdapterSettings) -> AsyncRewardClient:
    """The running event loop's async client for ``settings`` (httpx pools are per loop)."""
    loop = asyncio.get_running_loop()
    with _lock:
        cached = _async.get(loop)
        if cached is None or cached[0] != settings:
            cached = (settings, AsyncRewardClient(settings.urls, **settings.client_kwargs()))
            _async[loop] = cached
        return cached[1]


def text_of(completion: Any) -> str:
    """A completion as text: a string, or a conversational ``[{"role", "content"}]`` list
    (the assistant turns' content joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = [m.get("content", "") for m in completion if isinstance(m, dict)]
        return "".join(part for part in parts if isinstance(part, str))
    raise TypeError(f"a completion must be text or chat messages, not {type(completion).__name__}")
