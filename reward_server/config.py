"""Reward configuration: the `paper` profile, validated overrides and a stable hash.

Every number in docs/REWARD_CONTRACT.md is a field here. A :class:`RewardConfig` is immutable and
validated on construction (finite numbers, non-negative weights, threshold in [0, 1],
temperature > 0), so nothing downstream re-checks it.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reward_contract import CertaintyKind

ParseMode = Literal["strict", "lenient"]


class RewardConfig(BaseModel):
    """The reward design of REWARD_CONTRACT.md; defaults are the `paper` profile.

    Best attainable rewards (REWARD_CONTRACT.md §3) follow from the weights:
    ``terminate = format + type``; ``click = format + type + click_name_presence + dars``;
    ``type_and_submit = format + type + 2 presence weights + name_similarity + dars``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_weight: float = Field(0.5, ge=0, description="format reward (REWARD_CONTRACT.md §2)")
    type_weight: float = Field(0.3, ge=0, description="action type reward (REWARD_CONTRACT.md §3)")
    click_name_presence: float = Field(0.2, ge=0, description="click: name non-empty")
    type_name_presence: float = Field(0.1, ge=0, description="type_and_submit: name non-empty")
    type_text_presence: float = Field(0.1, ge=0, description="type_and_submit: text non-empty")
    name_similarity_weight: float = Field(
        0.1, ge=0, description="type_and_submit: weight of sim(name)"
    )
    dars: float = Field(
        1000.0, ge=0, description="difficulty-aware scale of the long-text similarity terms"
    )
    similarity_threshold: float = Field(
        0.75, ge=0, le=1, description="a similarity term counts only when sim >= threshold"
    )
    alpha: float = Field(0.005, ge=0, description="weight of the self-certainty reward")
    certainty_kind: CertaintyKind = "kl_uniform"
    temperature: float = Field(1.0, gt=0, le=100, description="logits temperature T")
    parse_mode: ParseMode = "strict"
    max_completion_chars: int = Field(
        32_768, gt=0, le=10_000_000, description="longer completions fail format: too_long"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def best_terminate(self) -> float:
        return self.format_weight + self.type_weight

    @property
    def best_click(self) -> float:
        return self.format_weight + self.type_weight + self.click_name_presence + self.dars

    @property
    def best_type_and_submit(self) -> float:
        return (
            self.format_weight
            + self.type_weight
            + self.type_name_presence
            + self.type_text_presence
            + self.name_similarity_weight
            + self.dars
        )

    def best_for(self, action_type: str) -> float:
        """Best attainable ``format + type + attribute + value`` for a ground-truth type."""
        if action_type == "click":
            return self.best_click
        if action_type == "type_and_submit":
            return self.best_type_and_submit
        return self.best_terminate

    def with_overrides(self, overrides: dict[str, Any] | None) -> RewardConfig:
        """A new validated config with ``overrides`` applied (unknown fields rejected)."""
        if not overrides:
            return self
        return RewardConfig.model_validate({**self.model_dump(), **overrides})

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the effective configuration (sorted-key JSON)."""
        return _config_hash(self)


PROFILES: dict[str, RewardConfig] = {
    "paper": RewardConfig(),
    # Ablation in the paper's Table 3: no difficulty-aware scaling.
    "no_dars": RewardConfig(dars=1.0),
}


@lru_cache(maxsize=1024)
def _config_hash(config: RewardConfig) -> str:
    # Cached: configs are frozen, and the hash is reported with every response.
    canonical = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_config(profile: str = "paper", path: str | None = None) -> RewardConfig:
    """Build a config from a named profile, optionally overridden by a JSON file."""
    if profile not in PROFILES:
        raise ValueError(f"unknown reward profile {profile!r}; known: {sorted(PROFILES)}")
    base = PROFILES[profile]
    if path is None:
        return base
    with open(path, encoding="utf-8") as handle:
        overrides = json.load(handle)
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: a config file must hold one JSON object")
    return base.with_overrides(overrides)


class ServerSettings(BaseModel):
    """Settings of ``shop-r1-reward serve``: built once by the CLI (flags, then
    ``SHOP_R1_*`` environment variables, then defaults) and passed down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    model: str = Field("embedded", description="'embedded', 'none' or a local model directory")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str = Field(
        "~/.cache/shop-r1-reward", description="where the de-quantised embedded model is cached"
    )
    profile: str = "paper"
    config_path: str | None = None
    api_key: str | None = Field(None, repr=False)
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_items: int = Field(4096, gt=0)
    default_timeout_seconds: float = Field(120.0, gt=0)
    max_batch_tokens: int = Field(8192, gt=0)
    max_queue_items: int = Field(4096, gt=0)
    max_wait_ms: float = Field(5.0, ge=0)
    max_items_per_batch: int = Field(64, gt=0)
    on_certainty_failure: Literal["null", "error"] = "null"
    reload_root: str | None = Field(None, description="model reloads only from under this dir")
    multiprocess_dir: str | None = None
    graceful_shutdown_seconds: float = Field(30.0, ge=0)
    log_level: str = "info"

    @property
    def loopback_only(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"} or self.host.startswith("127.")

    def check(self) -> ServerSettings:
        """Refuse settings that would expose an unauthenticated service."""
        if not self.loopback_only and not self.api_key:
            raise ValueError(
                f"binding {self.host!r} (not loopback) requires an API key: "
                "pass --api-key or set SHOP_R1_API_KEY"
            )
        return self
