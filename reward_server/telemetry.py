"""Prometheus metrics: definitions in one place, multiprocess-aware.

Under several uvicorn workers the serve command sets ``PROMETHEUS_MULTIPROC_DIR`` before
any worker imports prometheus_client; each worker then writes its samples there and
``/metrics`` aggregates them (gauges use ``livesum``). Labels are low-cardinality only:
route, status, component, reason, action type.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import weakref
from collections import Counter as Counter_
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from reward_contract import RULE_COMPONENTS
from reward_server.batched_histogram import BatchedHistogram
from reward_server.certainty.types import BatchStats
from reward_server.results import ItemResult
from reward_server.rewards import Action

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Rule components span 0..DARS: fine steps around the small fixed parts, coarse above.
COMPONENT_BUCKETS = (0, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 1.1, 2, 10, 100, 250, 500, 750, 800, 900,
                     950, 1000, 1001, 1001.1)
CERTAINTY_BUCKETS = (0, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)

REQUEST_SECONDS = Histogram(
    "reward_request_seconds", "HTTP request latency", ["route", "status"], buckets=LATENCY_BUCKETS
)
REQUEST_ITEMS = Histogram(
    "reward_request_items", "items per scoring request", ["route"], buckets=SIZE_BUCKETS
)
IN_FLIGHT = Gauge(
    "reward_in_flight_requests", "requests being served", multiprocess_mode="livesum"
)
COMPONENT_VALUE = BatchedHistogram(
    "reward_component_value",
    "per-item reward components (format, type, attribute, value, reward)",
    ["component"],
    buckets=COMPONENT_BUCKETS,
)
SCORE_VALUE = BatchedHistogram(
    "reward_score_value", "per-item normalised score in [0, 1]",
    buckets=(0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.99, 1),
)
CERTAINTY_VALUE = BatchedHistogram(
    "reward_self_certainty_value", "per-item self-certainty s", buckets=CERTAINTY_BUCKETS
)
CERTAINTY_NULL = Counter(
    "reward_self_certainty_null_total", "items whose self-certainty is null", ["reason"]
)
FORMAT_FAILURES = Counter(
    "reward_format_failures_total", "completions failing the format check", ["reason"]
)
ACTION_TYPES = Counter(
    "reward_action_type_total",
    "predicted vs ground-truth action type (predicted='invalid' on format failure)",
    ["predicted", "ground_truth"],
)
ERRORS = Counter("reward_errors_total", "requests answered with an error", ["kind"])
# Written by the connection limits below the application (api/connection_limits.py), so
# these never reach reward_request_seconds or reward_errors_total.
CONNECTIONS_DROPPED = Counter(
    "reward_connections_dropped_total",
    "connections or uploads the server cut itself (reason: connection_cap 503;"
    " header_timeout, body_timeout, body_too_slow, request_deadline and evicted_upload 408;"
    " headers_too_large 431; evicted idle at the cap; stopped_reading, answer_too_slow)",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "reward_scorer_queue_depth", "items waiting for the scoring model", multiprocess_mode="livesum"
)
BATCH_ITEMS = Histogram("reward_scorer_batch_items", "items per model batch", buckets=SIZE_BUCKETS)
BATCH_TOKENS = Histogram(
    "reward_scorer_batch_tokens", "tokens per model batch", buckets=TOKEN_BUCKETS
)
FORWARD_SECONDS = Histogram(
    "reward_scorer_forward_seconds", "model forward time per batch", buckets=LATENCY_BUCKETS
)
TOKENS = Counter("reward_scorer_tokens_total", "tokens run through the scoring model")
TOKENS_PER_SECOND = Gauge(
    "reward_scorer_tokens_per_second",
    "throughput of the last model batch (use rate(reward_scorer_tokens_total) for averages)",
    multiprocess_mode="mostrecent",
)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set: ``labels()`` validates and
    locks on every call, and the label sets here are few (routes, statuses)."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


class _Pending:
    """Per-item observations not yet written to the metrics."""

    def __init__(self) -> None:
        self.items = 0
        self.failures: Counter_[str] = Counter_()
        self.type_pairs: Counter_[tuple[str, str]] = Counter_()
        self.nulls: Counter_[str] = Counter_()
        self.components: dict[str, list[float]] = {
            name: [] for name in (*RULE_COMPONENTS, "reward")
        }
        self.scores: list[float] = []
        self.certainties: list[float] = []


class Telemetry:
    """Observer of results (service) and model batches (scorer) that feeds the metrics.

    Per-item values are written in batches: at most ``FLUSH_SECONDS`` after they were
    observed (a timer on the running loop), as soon as ``FLUSH_ITEMS`` are waiting, and
    before every ``/metrics`` render of this process. Writing them per request cost a
    one-item request more than scoring it: every histogram update takes a lock.
    """

    FLUSH_SECONDS = 0.25
    FLUSH_ITEMS = 4096

    def __init__(self) -> None:
        self._pending = _Pending()
        self._timer: asyncio.TimerHandle | None = None
        _live.add(self)

    def observe_results(self, results: Sequence[ItemResult], truths: Sequence[Action]) -> None:
        pending = self._pending
        components = pending.components
        formats, types, attributes, values = (components[name] for name in RULE_COMPONENTS)
        rewards, scores, certainties = components["reward"], pending.scores, pending.certainties
        for result, truth in zip(results, truths, strict=True):
            breakdown = result.breakdown
            if breakdown.failure_reason is not None:
                pending.failures[breakdown.failure_reason] += 1
                pending.type_pairs["invalid", truth.type] += 1
            else:
                pending.type_pairs[breakdown.action_type, truth.type] += 1  # type: ignore[index]
            # Every item, a format failure with its zeros: the components' series describe
            # the same items as the reward's (a failure rate shows in the format series).
            formats.append(breakdown.format)
            types.append(breakdown.type)
            attributes.append(breakdown.attribute)
            values.append(breakdown.value)
            rewards.append(breakdown.reward)
            scores.append(breakdown.score)
            certainty = breakdown.self_certainty
            if certainty is not None and math.isfinite(certainty):
                certainties.append(certainty)
            elif result.certainty.source == "model":
                pending.nulls[result.certainty.reason or "unknown"] += 1
        pending.items += len(results)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._pending.items >= self.FLUSH_ITEMS:
            self.flush()
            return
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to come back on: write now
            self.flush()
            return
        self._timer = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write every pending observation to the metrics."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, _Pending()
        if not pending.items:
            return
        for reason, count in pending.failures.items():
            child(FORMAT_FAILURES, reason).inc(count)
        for (predicted, truth_type), count in pending.type_pairs.items():
            child(ACTION_TYPES, predicted, truth_type).inc(count)
        for reason, count in pending.nulls.items():
            child(CERTAINTY_NULL, reason).inc(count)
        for name, observed in pending.components.items():
            COMPONENT_VALUE.labels(name).observe_many(observed)
        SCORE_VALUE.observe_many(pending.scores)
        CERTAINTY_VALUE.observe_many(pending.certainties)

    def on_batch(self, stats: BatchStats) -> None:
        BATCH_ITEMS.observe(stats.items)
        BATCH_TOKENS.observe(stats.tokens)
        FORWARD_SECONDS.observe(stats.forward_seconds)
        TOKENS.inc(stats.tokens)
        if stats.forward_seconds > 0:
            TOKENS_PER_SECOND.set(stats.tokens / stats.forward_seconds)

    def on_queue_depth(self, depth: int) -> None:
        QUEUE_DEPTH.set(depth)


_live: weakref.WeakSet[Telemetry] = weakref.WeakSet()


def flush_all() -> None:
    """Write the pending observations of every live :class:`Telemetry` of this process."""
    for telemetry in list(_live):
        telemetry.flush()


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_dead_workers(multiprocess_dir: str) -> list[int]:
    """Drop the live gauges (``livesum``, ...) of worker processes that no longer exist.

    A worker killed mid-request never decrements its in-flight gauge; prometheus_client
    leaves ``mark_process_dead`` to whoever notices the death. Returns the pids dropped.
    """
    dead = set()
    for path in Path(multiprocess_dir).glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _process_exists(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, multiprocess_dir)
    return sorted(dead)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def render_metrics(multiprocess_dir: str | None) -> tuple[bytes, str]:
    """The exposition text of this process, or of every worker in multiprocess mode
    (another worker's last observations appear within ``Telemetry.FLUSH_SECONDS``; a
    dead worker's live gauges are dropped first)."""
    flush_all()
    if multiprocess_dir:
        forget_dead_workers(multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
