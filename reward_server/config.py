"""Reward configuration: the `paper` profile, validated overrides and a stable hash.

Every number in docs/REWARD_CONTRACT.md is a field here. A :class:`RewardConfig` is
immutable and validated on construction (finite, bounded numbers: weights in [0, 1e6],
threshold in [0, 1], temperature in [0.01, 100]), so nothing downstream re-checks it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from copy import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, CliSuppress, SettingsConfigDict

from reward_contract import CertaintyKind

ParseMode = Literal["strict", "lenient"]
# How the action is credited: the hierarchical reward of REWARD_CONTRACT.md §3, or the
# binary baseline (exact_action_weight for an exactly right action, §6, else 0).
ActionRewardKind = Literal["hierarchical", "binary"]

# Bounds that keep every reward finite: with each weight <= MAX_WEIGHT, similarities in
# [0, 1] and |self-certainty| <= MAX_SELF_CERTAINTY, no sum or product can overflow.
# No sampler runs below MIN_TEMPERATURE; dividing logits by less only pushes them
# towards float32 overflow.
MAX_WEIGHT = 1e6
MAX_SELF_CERTAINTY = 1e6
MIN_TEMPERATURE = 0.01
MAX_COMPLETION_CHARS = 1_048_576


class RewardConfig(BaseModel):
    """The reward design of REWARD_CONTRACT.md; defaults are the `paper` profile.

    Every number is bounded (see ``MAX_WEIGHT``), so no configuration can make a reward
    overflow to infinity.

    Best attainable rewards (REWARD_CONTRACT.md §3) follow from the weights:
    ``terminate = format + type``; ``click = format + type + click_name_presence + dars``;
    ``type_and_submit = format + type + 2 presence weights + name_similarity + dars``;
    with ``action_reward="binary"``, ``format + exact_action_weight`` for every type.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_weight: float = Field(0.5, ge=0, le=MAX_WEIGHT, description="format reward (§2)")
    type_weight: float = Field(0.3, ge=0, le=MAX_WEIGHT, description="action type reward (§3)")
    click_name_presence: float = Field(
        0.2, ge=0, le=MAX_WEIGHT, description="click: name non-empty"
    )
    type_name_presence: float = Field(
        0.1, ge=0, le=MAX_WEIGHT, description="type_and_submit: name non-empty"
    )
    type_text_presence: float = Field(
        0.1, ge=0, le=MAX_WEIGHT, description="type_and_submit: text non-empty"
    )
    name_similarity_weight: float = Field(
        0.1, ge=0, le=MAX_WEIGHT, description="type_and_submit: weight of sim(name)"
    )
    dars: float = Field(
        1000.0, ge=0, le=MAX_WEIGHT,
        description="difficulty-aware scale of the long-text similarity terms",
    )
    similarity_threshold: float = Field(
        0.75, ge=0, le=1, description="a similarity term counts only when sim >= threshold"
    )
    alpha: float = Field(
        0.005, ge=0, le=MAX_WEIGHT, description="weight of the self-certainty reward"
    )
    certainty_kind: CertaintyKind = "kl_uniform"
    temperature: float = Field(
        1.0, ge=MIN_TEMPERATURE, le=100, description="logits temperature T"
    )
    parse_mode: ParseMode = "strict"
    action_reward: ActionRewardKind = Field(
        "hierarchical",
        description="'hierarchical' (§3) or 'binary': exact_action_weight for an exactly"
        " right action (§6), else 0",
    )
    exact_action_weight: float = Field(
        1.0, ge=0, le=MAX_WEIGHT, description="binary: credit of an exactly right action"
    )
    max_completion_chars: int = Field(
        32_768, gt=0, le=MAX_COMPLETION_CHARS,
        description="longer completions fail format: too_long",
    )

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
        if self.action_reward == "binary":
            return self.format_weight + self.exact_action_weight
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


# The paper's Table 3 ablations and its binary baseline (REWARD_CONTRACT.md §8).
PROFILES: dict[str, RewardConfig] = {
    "paper": RewardConfig(),
    # No difficulty-aware scaling.
    "no_dars": RewardConfig(dars=1.0),
    # "RL (binary)": format kept, 1 for an exactly right action, else 0; no self-certainty.
    "binary": RewardConfig(action_reward="binary", alpha=0.0),
    # No format reward; a completion that cannot be parsed still earns 0 in total.
    "no_format": RewardConfig(format_weight=0.0),
    "no_self_certainty": RewardConfig(alpha=0.0),
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


class ScorerSettings(BaseModel):
    """How the model scorer forms batches and bounds its queue: the one home of these
    settings and their defaults. :class:`ServerSettings` carries them as its own flags;
    the scorer (``reward_server.certainty``) reads them from here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_tokens: int = Field(8192, gt=0, description="tokens in one model batch")
    max_queue_items: int = Field(4096, gt=0, description="items waiting for the model")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a model batch waits to fill")
    max_items_per_batch: int = Field(64, gt=0, description="items in one model batch")

    def with_values(self, **values: float) -> ScorerSettings:
        """These settings with ``values`` replaced, validated; an unknown name is refused."""
        return ScorerSettings.model_validate({**self.model_dump(), **values})


def _scorer_setting(name: str) -> Any:
    """A :class:`ScorerSettings` field (default, bounds, description) for another model to
    carry as its own flag: both read the one definition."""
    return copy(ScorerSettings.model_fields[name])


class ServerSettings(BaseSettings):
    """Settings of ``shop-r1-reward serve``, from one model: command-line flags win over
    ``SHOP_R1_<NAME>`` environment variables, which win over the defaults. Built once by
    the entry point and passed down; nothing below it reads the environment."""

    model_config = SettingsConfigDict(env_prefix="SHOP_R1_", frozen=True, extra="forbid")

    host: str = Field(
        "127.0.0.1", description="address to bind; any but a loopback address needs an API key"
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    workers: int = Field(1, ge=1, le=64, description="worker processes")
    model: str = Field(
        "embedded",
        description="'embedded', 'none' (rules only), a local model directory, or vllm:<model>",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    cache_dir: str = Field(
        "~/.cache/shop-r1-reward", description="where the de-quantised embedded model is cached"
    )
    profile: str = Field("paper", description="reward profile: " + ", ".join(PROFILES))
    config_path: str | None = Field(None, description="JSON file of reward setting overrides")
    api_key: str | None = Field(
        None,
        repr=False,
        description="bearer key every route but the probes requires; prefer SHOP_R1_API_KEY"
        " or --api-key-file: a value on the command line is visible to other users in ps",
    )
    api_key_file: str | None = Field(
        None, description="file whose content (stripped) is the API key"
    )
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest request body")
    max_items: int = Field(4096, gt=0, description="most items in one request")
    default_timeout_seconds: float = Field(
        120.0, gt=0,
        description="deadline of a request, its upload included (X-Request-Timeout may ask"
        " for less); at the default a 64 MiB body needs a link of about 8 Mbit/s or faster",
    )
    max_batch_tokens: int = _scorer_setting("max_batch_tokens")
    max_queue_items: int = _scorer_setting("max_queue_items")
    max_wait_ms: float = _scorer_setting("max_wait_ms")
    max_items_per_batch: int = _scorer_setting("max_items_per_batch")
    on_certainty_failure: Literal["null", "error"] = Field(
        "null", description="a failed model: null self-certainty with a reason, or a 503"
    )
    reload_root: str | None = Field(None, description="model reloads only from under this dir")
    # Set by the serve command for --workers > 1, never by a user.
    multiprocess_dir: CliSuppress[str | None] = None
    graceful_shutdown_seconds: float = Field(
        30.0, ge=0, description="on SIGTERM, how long in-flight requests may finish"
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="largest request line plus headers; more is answered 431",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0,
        description="total time a connection has to send a request's headers, from when it"
        " opens or its previous answer ends; later is answered 408",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0,
        description="longest pause while a request body is received (408) or an answer is"
        " read (the connection is dropped)",
    )
    min_rate_bytes: float = Field(
        64 * 1024, gt=0,
        description="bytes/s a request body must arrive at, and an answer be read at, on"
        " average once --rate-grace-seconds have passed (Apache mod_reqtimeout's MinRate);"
        " slower is cut: 408, or the connection dropped",
    )
    rate_grace_seconds: float = Field(
        10.0, ge=0,
        description="seconds an upload or an answer may take before --min-rate-bytes applies"
        " (allowed time: grace + bytes so far / min rate)",
    )
    keep_alive_seconds: int = Field(5, ge=1, description="idle keep-alive connections close")
    max_connections: int | None = Field(
        None, gt=0,
        description="open connections per worker; at the limit a new one evicts the oldest"
        " idle one, else the slowest upload (408), else it is refused (503)"
        " (default: 3/4 of the open-file limit)",
    )
    log_level: str = Field("info", description="uvicorn log level")
    # Set by ray-serve, never by a user: there the HTTP server in front is Ray's, so the
    # app itself bounds each upload (api/upload_limits.py).
    app_bounds_uploads: CliSuppress[bool] = False

    @model_validator(mode="after")
    def _key_from_file(self) -> ServerSettings:
        if self.api_key_file and not self.api_key:
            key = Path(self.api_key_file).expanduser().read_text(encoding="utf-8").strip()
            if not key:
                raise ValueError(f"api_key_file {self.api_key_file!r} is empty")
            object.__setattr__(self, "api_key", key)
        return self

    @property
    def scorer(self) -> ScorerSettings:
        """The model scorer's settings among these."""
        return ScorerSettings.model_validate(
            {name: getattr(self, name) for name in ScorerSettings.model_fields}
        )

    @property
    def loopback_only(self) -> bool:
        """Whether ``host`` is a loopback address (``localhost`` or an IP literal in
        127.0.0.0/8 or ::1); a name that merely starts with "127." is not."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> ServerSettings:
        """Refuse settings that would expose an unauthenticated service."""
        if not self.loopback_only and not self.api_key:
            raise ValueError(
                f"binding {self.host!r} (not loopback) requires an API key: set "
                "SHOP_R1_API_KEY, or pass --api-key-file (or --api-key)"
            )
        return self
