"""Ray Serve's own features against the hand-built ones of ``reward_server.ray_serve``, in
one local Ray cluster, inside one real model replica (the project's scorer, the embedded
SmolLM2):

(a) Coalescing a GRPO group whose members arrive as separate calls (a trainer posting one
    sample per request). ``--groups`` prompts x ``--members`` completions; each group's
    members arrive spread over ``--spread-ms`` from a start drawn uniformly in
    ``--span-ms``, so groups interleave. Three ways into the same scorer:
    ``direct`` (each call scored as it comes: only the scorer's own micro-batcher joins
    them), ``serve_batch`` (Serve's ``@serve.batch``, ``batch_wait_timeout_s`` = the
    window, ``max_batch_size`` = the scorer's batch size) and ``keyed`` (the named
    baseline, :class:`~reward_server.ray_serve.coalesce.KeyedCoalescer`: a window per
    prompt key). Measured in the replica: prompt encodings (one prefill of a prompt
    each; the ideal is one per group) and each call's latency. Each way runs
    ``--repeats`` times, interleaved; medians are reported.
(b) Metrics: a counter incremented in the replica, read from the replica's own
    Prometheus endpoint (:class:`~reward_server.ray_serve.replica_metrics.MetricsEndpoint`,
    the named baseline) and from Ray's metrics agent for ``ray.serve.metrics.Counter``:
    the series' name there and the seconds until a scrape shows an increment.

    python bench/bench_serve_features.py [--groups 8 --members 8 --repeats 3]

Ends with one JSON line: ``ratio_vs_baseline`` is the prompt encodings of ``keyed`` over
those of ``serve_batch``, i.e. Serve's batcher's encoding efficiency relative to the keyed
window's (below 1: it repeats prompt encodings that the keyed window saves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_http import free_port  # noqa: E402
from reward_server.certainty.types import CertaintyRequest  # noqa: E402

WAYS = ("direct", "serve_batch", "keyed")
COUNTER = "bench_serve_features_calls"


def grpo_requests(groups: int, members: int, seed: int) -> list[tuple[int, CertaintyRequest]]:
    """(group, request) for every member: one prompt per group, distinct rationales."""
    rng = random.Random(seed)
    items = ["lamp", "desk", "kettle", "monitor", "backpack", "tent", "router", "chair"]
    out = []
    for g in range(groups):
        wanted = items[g % len(items)]
        prompt = (f"<|im_start|>user\nYou are shopping for a {wanted} (group {g}). The page "
                  "lists " + ", ".join(f"{wanted} model {k}" for k in range(24))
                  + ".<|im_end|>\n<|im_start|>assistant\n")
        for m in range(members):
            rationale = f"I compare the {wanted} prices and pick model {rng.randrange(24)} ({m})."
            text = ('{"rationale": "' + rationale
                    + '", "action": {"type": "click", "name": "buy_now"}}')
            start = text.index(rationale)
            out.append((g, CertaintyRequest(completion_text=text, prompt_text=prompt,
                                            rationale_span=(start, start + len(rationale)))))
    return out


def _deployment(window_ms: float, max_items: int) -> Any:
    from ray import serve

    @serve.deployment(max_ongoing_requests=1024)
    class Probe:
        async def __init__(self, cache_dir: str) -> None:
            from prometheus_client import Counter

            from reward_server.certainty import build_scorer
            from reward_server.ray_serve.coalesce import KeyedCoalescer
            from reward_server.ray_serve.replica_metrics import MetricsEndpoint, WorkCounts

            self.counts = WorkCounts()
            self.scorer = build_scorer("embedded", "cpu", cache_dir, observer=self.counts)
            await self.scorer.start()
            self.keyed_coalescer = KeyedCoalescer(self.scorer.score, window_ms / 1000, max_items)
            self.own_counter = Counter(COUNTER, "calls (the replica's own registry)")
            self.serve_counter = serve.metrics.Counter(COUNTER, description="calls (Serve)")
            self.endpoint = MetricsEndpoint("127.0.0.1", "Probe", "r", "n")

        @serve.batch(max_batch_size=max_items, batch_wait_timeout_s=window_ms / 1000)
        async def _batched(self, requests: list[CertaintyRequest]) -> list[Any]:
            return await self.scorer.score(requests)

        async def score(self, way: str, request: CertaintyRequest, key: str) -> float:
            started = time.perf_counter()
            if way == "serve_batch":
                await self._batched(request)
            elif way == "keyed":
                await self.keyed_coalescer.submit(key, [request], None)
            else:
                await self.scorer.score([request])
            return time.perf_counter() - started

        def take_counts(self) -> dict[str, Any]:
            snapshot = self.counts.snapshot(False)
            self.counts.batches = self.counts.items = self.counts.prompt_encodings = 0
            self.counts.tokens = 0
            return snapshot

        def count_call(self) -> str:
            self.own_counter.inc()
            self.serve_counter.inc()
            return self.endpoint.target.address

    return Probe


async def run_way(handle: Any, way: str, calls: list[tuple[int, CertaintyRequest]],
                  spread_s: float, span_s: float, rng: random.Random) -> dict[str, Any]:
    """Every member sent at its arrival time; the replica's counts and the latencies."""
    starts = {g: rng.uniform(0, span_s) for g, _ in calls}
    arrivals = sorted(((starts[g] + rng.uniform(0, spread_s), g, r) for g, r in calls),
                      key=lambda arrival: arrival[0])
    t0 = time.perf_counter()

    async def send(at: float, group: int, request: CertaintyRequest) -> float:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        return await handle.score.remote(way, request, f"g{group}")

    latencies = await asyncio.gather(*(send(at, g, r) for at, g, r in arrivals))
    counts = await handle.take_counts.remote()
    return {"encodings": counts["prompt_encodings"], "batches": counts["batches"],
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * max(latencies)}


def _scrape(url: str, name: str) -> float | None:
    """The summed value of ``name``'s samples at ``url``, or None if it is absent."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (name, name + "_total"):
                total = (total or 0.0) + sample.value
    return total


def metrics_freshness(handle: Any, agent_url: str, limit_s: float) -> dict[str, Any]:
    """Seconds until one increment shows at each endpoint, and the name in Ray's export."""
    address = handle.count_call.remote().result()
    own_url = f"http://{address}/metrics"
    before_own = _scrape(own_url, COUNTER) or 0.0
    t0 = time.perf_counter()
    handle.count_call.remote().result()
    seen: dict[str, float | None] = {"own": None, "serve": None}
    ray_name = "ray_" + COUNTER
    while time.perf_counter() - t0 < limit_s and None in seen.values():
        elapsed = time.perf_counter() - t0
        if seen["own"] is None and (_scrape(own_url, COUNTER) or 0.0) > before_own:
            seen["own"] = elapsed
        if seen["serve"] is None and (_scrape(agent_url, ray_name) or 0.0) >= 2:
            seen["serve"] = elapsed
        time.sleep(0.05)
    return {"own_endpoint_s": seen["own"], "serve_metrics_s": seen["serve"],
            "serve_metrics_name": ray_name, "limit_s": limit_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-ms", type=float, default=20.0,
                        help="the coalescing window of serve_batch and keyed")
    parser.add_argument("--spread-ms", type=float, default=20.0,
                        help="how far apart one group's members arrive")
    parser.add_argument("--span-ms", type=float, default=200.0,
                        help="the groups' first members arrive within this")
    parser.add_argument("--metrics-limit-s", type=float, default=30.0,
                        help="longest wait for an increment to show in a scrape")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "shop-r1-reward"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray
    from ray import serve

    agent_port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, _metrics_export_port=agent_port,
             logging_level="error", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        probe = _deployment(args.window_ms, 64)
        handle = serve.run(probe.bind(args.cache_dir), name="bench", route_prefix=None)
        calls = grpo_requests(args.groups, args.members, args.seed)
        rng = random.Random(args.seed)
        asyncio.run(run_way(handle, "direct", calls[:2], 0.0, 0.0, rng))  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way in WAYS:
                runs[way].append(asyncio.run(run_way(
                    handle, way, calls, args.spread_ms / 1000, args.span_ms / 1000, rng)))
        metrics = metrics_freshness(handle, f"http://127.0.0.1:{agent_port}/metrics",
                                    args.metrics_limit_s)
    finally:
        serve.shutdown()
        ray.shutdown()

    summary: dict[str, Any] = {"groups": args.groups, "members": args.members,
                               "window_ms": args.window_ms, "spread_ms": args.spread_ms}
    print(f"(a) {args.groups} prompts x {args.members} completions, one per call, "
          f"window {args.window_ms:g} ms, {args.repeats} repeats (medians)")
    print(f"{'way':<13}{'encodings':>10}{'ideal':>7}{'batches':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for way in WAYS:
        row = {k: statistics.median(r[k] for r in runs[way]) for k in runs[way][0]}
        print(f"{way:<13}{row['encodings']:>10g}{args.groups:>7}{row['batches']:>9g}"
              f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}")
        summary.update({f"{way}_{k}": round(v, 2) for k, v in row.items()})
    print(f"(b) one increment: the replica's endpoint shows it after "
          f"{metrics['own_endpoint_s']} s; Ray's metrics agent (as "
          f"{metrics['serve_metrics_name']}) after {metrics['serve_metrics_s']} s "
          f"(None: not within {metrics['limit_s']:g} s)")
    summary.update(metrics)
    ratio = summary["keyed_encodings"] / max(summary["serve_batch_encodings"], 1)
    print(json.dumps({"bench": "serve_features", **summary,
                      "ratio_vs_baseline": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
