"""Adapter configuration from environment variables, and the shared clients.

Trainers import an adapter module by path and call its function, so the adapter is the
entry point: it is the one place that reads ``os.environ``. Variables:

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
``SHOP_R1_REWARD_PROFILE``         reward profile of every request (``paper``, ``binary``,
                                   ``no_format``, ...; default: the server's); the
                                   overrides above apply on top of it
``SHOP_R1_REWARD_BATCH_WAIT_MS``   verl per-sample coalescing window (default 5)
``SHOP_R1_REWARD_BATCH_MAX_ITEMS`` verl per-sample coalescing batch cap (default 256)
=================================  =========================================================

Variables are read when a client is first needed (not at import), and again whenever
they change, so a script may set them after importing the adapter; an unchanged
environment is not parsed again (settings and ``SHOP_R1_REWARD_CONFIG`` are cached by
value), however many calls a training step makes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client import DEFAULT_URL, AsyncRewardClient, RetryPolicy, RewardClient
from reward_contract import CertaintySource

PREFIX = "SHOP_R1_"


class AdapterSettings(BaseSettings):
    """Everything an adapter needs to build its client and requests: one pydantic-settings
    model over the ``SHOP_R1_*`` variables above (the field name is the variable's suffix;
    an empty variable counts as unset)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="ignore", env_ignore_empty=True
    )

    reward_url: str = DEFAULT_URL
    api_key: str | None = Field(None, repr=False)
    reward_timeout: float = Field(120.0, gt=0)
    reward_chunk_size: int = Field(512, ge=1)
    reward_max_concurrency: int = Field(16, ge=1)
    reward_max_attempts: int = Field(5, ge=1)
    self_certainty_source: CertaintySource | None = None
    reward_config: str | None = None  # JSON text, kept as text so the settings hash
    reward_profile: str | None = None
    reward_batch_wait_ms: float = Field(5.0, ge=0)
    reward_batch_max_items: int = Field(256, ge=1)

    @field_validator("reward_config")
    @classmethod
    def _json_object(cls, value: str | None) -> str | None:
        if value is not None:
            _parsed_config(value)  # raises naming what is wrong; the parse is kept
        return value

    @classmethod
    def from_env(cls) -> AdapterSettings:
        """The settings the environment gives now (read again whenever it changes, so a
        script may set the variables after importing an adapter). Raises ValueError
        naming the variable when one is invalid."""
        snapshot = tuple(sorted(
            (name, value) for name, value in os.environ.items() if name.startswith(PREFIX)
        ))
        return _settings_for(cls, snapshot)

    def config(self) -> Mapping[str, Any] | None:
        """The per-request reward overrides (``SHOP_R1_REWARD_CONFIG``), if any: parsed
        once per distinct text, read-only since every call shares it."""
        return _parsed_config(self.reward_config) if self.reward_config else None

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "timeout": self.reward_timeout,
            "chunk_size": self.reward_chunk_size,
            "max_concurrency": self.reward_max_concurrency,
            "retry": RetryPolicy(max_attempts=self.reward_max_attempts),
        }

    def score_kwargs(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "self_certainty_source": self.self_certainty_source,
            "profile": self.reward_profile,
        }


@lru_cache(maxsize=64)
def _parsed_config(text: str) -> Mapping[str, Any]:
    # Keyed on the text itself, so a changed variable is parsed anew and an unchanged one
    # never again, however many calls a training step makes.
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    return MappingProxyType(parsed)


@lru_cache(maxsize=64)
def _settings_for(
    cls: type[AdapterSettings], snapshot: tuple[tuple[str, str], ...]
) -> AdapterSettings:
    # Adapters are called per sample: building the model once per distinct environment
    # keeps that off the hot path. ``snapshot`` is the key; the model reads os.environ.
    try:
        return cls()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = PREFIX + str(error["loc"][0]).upper() if error["loc"] else PREFIX + "*"
        raise ValueError(f"{name}: {error['msg']}") from None


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
            _sync[settings] = RewardClient(settings.reward_url, **settings.client_kwargs())
        return _sync[settings]


def async_client(settings: AdapterSettings) -> AsyncRewardClient:
    """The running event loop's async client for ``settings`` (httpx pools are per loop)."""
    loop = asyncio.get_running_loop()
    with _lock:
        cached = _async.get(loop)
        if cached is None or cached[0] != settings:
            cached = (
                settings, AsyncRewardClient(settings.reward_url, **settings.client_kwargs())
            )
            _async[loop] = cached
        return cached[1]


def text_of(completion: Any) -> str:
    """A completion as text: a string, or a conversational ``[{"role", "content"}]`` list
    (the assistant turns' content joined; TRL appends the results of tool calls to the
    completion as ``tool`` messages, which the policy did not write)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = [
            m.get("content", "")
            for m in completion
            if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
        ]
        return "".join(part for part in parts if isinstance(part, str))
    raise TypeError(f"a completion must be text or chat messages, not {type(completion).__name__}")
