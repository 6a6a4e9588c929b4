"""Per-replica Prometheus endpoints and what a model replica counts of its own work.

Each replica process keeps its ``reward_*`` series in its own registry (exactly the
single-process service's series). Behind Ray Serve's proxy, ``/metrics`` would show
whichever replica answered, so every replica also serves its registry on its own port
of its node's address, and the ingress lists those endpoints in Prometheus' HTTP
service-discovery format (``GET /v1/metrics/targets``): one scrape job then sees every
replica, each as its own ``instance``, and ``sum(...)`` over them is the application's
total.

Why not ``ray.serve.metrics`` (which tags deployment and replica by itself): Ray's metrics
agent exports those series renamed ``ray_<name>`` (every documented ``reward_*`` series
and dashboard would change, and the single-process service, which has no Ray, would need a
second definition of each) and only at its next export: measured by
``bench/bench_serve_features.py`` (b), an increment showed there after 2.3 to 9.2 s,
against 0.005 s at the replica's own endpoint. Serve's own ``ray_serve_*`` series still
come from the agent, beside these.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server

from reward_server.certainty.types import BatchStats
from reward_server.ray_serve.wire import MetricsTarget


class MetricsEndpoint:
    """This process's default registry over HTTP on ``host`` and a free port."""

    def __init__(self, host: str, deployment: str, replica: str, node_id: str) -> None:
        self._server, self._thread = start_http_server(0, addr=host)
        port = self._server.server_port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.target = MetricsTarget(address, deployment, replica, node_id)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# Enough distinct prompts to cover several training steps; older ones are forgotten
# first, so the record stays bounded whatever the traffic.
MAX_RECORDED_PROMPTS = 65536


@dataclass
class WorkCounts:
    """Batches, items, prompt encodings and tokens the model ran, and the items scored
    per routing key: what shows that a group met on one replica and was encoded once.

    An observer of the scorer (``on_batch``, ``on_queue_depth``) beside the telemetry.
    """

    batches: int = 0
    items: int = 0
    prompt_encodings: int = 0
    tokens: int = 0
    keys: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_batch(self, stats: BatchStats) -> None:
        with self._lock:
            self.batches += 1
            self.items += stats.items
            # Each prompt group of a batch is one prompt encoding (the backends report
            # the group count; a batch without it encoded one prompt per item).
            self.prompt_encodings += int(stats.extra.get("groups", stats.items))
            self.tokens += stats.tokens

    def on_queue_depth(self, depth: int) -> None:
        pass

    def record_key(self, key: str | None, items: int) -> None:
        if key is None:
            return
        with self._lock:
            self.keys[key] = self.keys.pop(key, 0) + items
            while len(self.keys) > MAX_RECORDED_PROMPTS:
                self.keys.popitem(last=False)

    def snapshot(self, with_keys: bool) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "batches": self.batches,
                "items": self.items,
                "prompt_encodings": self.prompt_encodings,
                "tokens": self.tokens,
            }
            if with_keys:
                out["keys"] = dict(self.keys)
            return out


class ObserverFanout:
    """Passes the scorer's observations to several observers (telemetry, counts)."""

    def __init__(self, *observers: Any) -> None:
        self._observers = observers

    def on_batch(self, stats: BatchStats) -> None:
        for observer in self._observers:
            observer.on_batch(stats)

    def on_queue_depth(self, depth: int) -> None:
        for observer in self._observers:
            observer.on_queue_depth(depth)
