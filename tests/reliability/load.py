"""Load proof: a real server process on 127.0.0.1, every answer checked.

Phases (after a warm-up), against one ``shop-r1-reward serve`` process with the embedded
SmolLM2 model loaded (``--model none`` where it is not installed):

(a) rules-only one-item ``POST /v1/rewards`` requests from 256 concurrent keep-alive
    connections (OpenRLHF's pattern: one request per sample), in two equal rounds;
(b) rules-only batches of 1,024 items from 4 connections, in the same two rounds;
(c) mixed: one-item requests with *model* self-certainty from 16 connections while more
    rules-only one-item requests run from 256 connections.

Every result is compared with in-process scoring of the same input
(:mod:`tests.reliability.workload`; for model items: a finite ``self_certainty`` and
``reward == rules + alpha * s``). Lost (no 200 answer or a short list), mismatched (any
field differs) and reordered (id / index) results are counted. Throughput, p50 / p99 /
max latency and the server's VmRSS (``/proc/<pid>/status``) after warm-up, after each
round and at the end are reported.

Full size (20,000 + 4,400 one-item requests, 200 x 1,024 items, 400 model requests)::

    python -m tests.reliability.load --full

The CI test (``tests/reliability/test_load.py``) runs ``CI_PLAN`` with the same code.
The load generator is a minimal asyncio HTTP/1.1 keep-alive client rather than httpx so
that the generator, which shares the 2 cores with the server, costs as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.workload import Case, check_result, make_cases


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, timeout: float = 300) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._post(path, body), timeout)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise HttpError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Tally:
    """Outcome of one phase."""

    name: str
    requests: int = 0
    items: int = 0
    lost: int = 0
    mismatched: int = 0
    reordered: int = 0
    model_items_checked: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    model_latencies: list[float] = field(default_factory=list, repr=False)
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(message[:300])

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("latencies", "model_latencies")}
        lat = self.latencies
        out.update(
            requests_per_s=round(self.requests / self.seconds, 1) if self.seconds else 0,
            items_per_s=round(self.items / self.seconds, 1) if self.seconds else 0,
            p50_ms=round(1000 * _pct(lat, 0.50), 2),
            p99_ms=round(1000 * _pct(lat, 0.99), 2),
            max_ms=round(1000 * max(lat, default=0), 2),
        )
        if self.model_latencies:
            out.update(
                model_p50_ms=round(1000 * _pct(self.model_latencies, 0.5), 1),
                model_max_ms=round(1000 * max(self.model_latencies), 1),
            )
        out["seconds"] = round(self.seconds, 2)
        return out


def _check_batch(
    tally: Tally, status: int, payload: bytes, cases: list[Case], ids: list[Any], model: bool
) -> None:
    if status != 200:
        tally.fail("lost", f"HTTP {status}: {payload[:200]!r}")
        return
    results = json.loads(payload)["results"]
    if len(results) != len(cases):
        tally.fail("lost", f"{len(results)} results for {len(cases)} items")
        return
    for index, (result, case, item_id) in enumerate(zip(results, cases, ids, strict=True)):
        problem = check_result(result, case, item_id, index, model=model)
        if problem is None:
            if model and case.expected.format_ok:
                tally.model_items_checked += 1
            continue
        tally.fail("reordered" if problem.startswith("reordered") else "mismatched", problem)


async def one_item_phase(
    host: str, port: int, cases: list[Case], requests: int, concurrency: int,
    model_every: int = 0, tag: str = "s",
) -> Tally:
    """``requests`` one-item requests from ``concurrency`` connections; every
    ``model_every``-th asks for model self-certainty (0: none do)."""
    tally = Tally(f"one-item x{requests} @{concurrency}")
    counter = iter(range(requests))

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            for n in counter:
                case = cases[n % len(cases)]
                model = bool(model_every) and n % model_every == 0
                item_id = f"{tag}-{n}"
                body = json.dumps({
                    "items": [case.item(item_id)],
                    "self_certainty_source": "model" if model else "none",
                }).encode()
                started = time.perf_counter()
                try:
                    status, payload = await conn.post("/v1/rewards", body)
                except (TimeoutError, OSError, HttpError, asyncio.IncompleteReadError) as exc:
                    await conn.close()
                    tally.fail("lost", f"{item_id}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                (tally.model_latencies if model else tally.latencies).append(elapsed)
                tally.requests += 1
                tally.items += 1
                _check_batch(tally, status, payload, [case], [item_id], model)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally


async def batch_phase(
    host: str, port: int, cases: list[Case], batches: int, batch_size: int, concurrency: int,
    tag: str = "b",
) -> Tally:
    """``batches`` requests of ``batch_size`` items (rules only) from ``concurrency``
    connections; each batch is a different rotation of the case pool."""
    tally = Tally(f"batches {batches}x{batch_size} @{concurrency}")
    counter = iter(range(batches))

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            for b in counter:
                start = (b * 7919) % len(cases)
                chosen = [cases[(start + k) % len(cases)] for k in range(batch_size)]
                ids: list[Any] = [f"{tag}{b}-{k}" if k % 2 else b * batch_size + k
                                  for k in range(batch_size)]
                body = json.dumps({
                    "items": [c.item(i) for c, i in zip(chosen, ids, strict=True)],
                    "self_certainty_source": "none",
                }).encode()
                started = time.perf_counter()
                try:
                    status, payload = await conn.post("/v1/rewards", body)
                except (TimeoutError, OSError, HttpError, asyncio.IncompleteReadError) as exc:
                    await conn.close()
                    tally.fail("lost", f"batch {b}: {type(exc).__name__}: {exc}")
                    tally.lost += batch_size - 1
                    continue
                tally.latencies.append(time.perf_counter() - started)
                tally.requests += 1
                tally.items += batch_size
                _check_batch(tally, status, payload, chosen, ids, False)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally


@dataclass(frozen=True)
class LoadPlan:
    requests: int = 20_000  # rules-only one-item requests (two rounds of half)
    concurrency: int = 256
    batches: int = 200  # rules-only batches (two rounds of half)
    batch_size: int = 1024
    batch_concurrency: int = 4
    model_requests: int = 400  # one-item model requests, mixed with rules traffic
    model_concurrency: int = 16
    mixed_rules_requests: int = 4_000  # rules one-item requests sent alongside them
    warmup_requests: int = 1_000
    warmup_batches: int = 10
    cases: int = 4_000


CI_PLAN = LoadPlan(requests=2_000, batches=20, model_requests=16, model_concurrency=8,
                   mixed_rules_requests=400,
                   warmup_requests=500, warmup_batches=4, cases=2_000)


async def run_load(host: str, port: int, pid: int, plan: LoadPlan, model: bool) -> dict[str, Any]:
    """Warm up; run the rules-only phases twice (round 1, round 2); then, with a model, a
    mixed phase: ``model_requests`` one-item model requests from ``model_concurrency``
    connections while ``mixed_rules_requests`` rules one-item requests run from
    ``concurrency`` connections.

    Memory: the growth bound is stated on ``end - after_warmup`` and, more tightly, on
    round 2 over round 1 (a leak grows with traffic; allocator high-water marks do not).
    """
    cases = make_cases(plan.cases)
    rss_start = rss_kib(pid)
    await one_item_phase(host, port, cases, plan.warmup_requests, plan.concurrency, 0, "w")
    await batch_phase(host, port, cases, plan.warmup_batches, plan.batch_size,
                      plan.batch_concurrency, "wb")
    if model:
        await one_item_phase(host, port, cases, 8, 8, 1, "wm")
    rss_warm = rss_kib(pid)
    rounds = []
    rss_after_round = []
    for r in range(2):
        single = await one_item_phase(host, port, cases, plan.requests // 2, plan.concurrency,
                                      0, f"r{r}s")
        batch = await batch_phase(host, port, cases, plan.batches // 2, plan.batch_size,
                                  plan.batch_concurrency, f"r{r}b")
        rounds.append((single, batch))
        rss_after_round.append(rss_kib(pid))
    single = _merge([s for s, _ in rounds], f"one-item x{plan.requests} @{plan.concurrency}")
    batch = _merge([b for _, b in rounds],
                   f"batches {plan.batches}x{plan.batch_size} @{plan.batch_concurrency}")
    tallies = [single, batch]
    report: dict[str, Any] = {"plan": asdict(plan), "model": model,
                              "one_item": single.summary(), "batches": batch.summary()}
    if model:
        # Every request of the model stream asks for model self-certainty.
        model_tally, mixed_rules = await asyncio.gather(
            one_item_phase(host, port, cases, plan.model_requests, plan.model_concurrency,
                           1, "m"),
            one_item_phase(host, port, cases, plan.mixed_rules_requests, plan.concurrency,
                           0, "mr"),
        )
        tallies += [model_tally, mixed_rules]
        report["mixed_model"] = model_tally.summary()
        report["mixed_rules"] = mixed_rules.summary()
    rss_end = rss_kib(pid)
    report.update(
        lost=sum(t.lost for t in tallies),
        mismatched=sum(t.mismatched for t in tallies),
        reordered=sum(t.reordered for t in tallies),
        one_item_requests_total=sum(t.requests for t in tallies if t.name.startswith("one")),
        rss_mib={
            "start": round(rss_start / 1024, 1),
            "after_warmup": round(rss_warm / 1024, 1),
            "after_round1": round(rss_after_round[0] / 1024, 1),
            "after_round2": round(rss_after_round[1] / 1024, 1),
            "end": round(rss_end / 1024, 1),
            "growth_round2": round((rss_after_round[1] - rss_after_round[0]) / 1024, 1),
            "growth_after_warmup": round((rss_end - rss_warm) / 1024, 1),
        },
    )
    return report


def _merge(parts: list[Tally], name: str) -> Tally:
    out = Tally(name)
    for p in parts:
        for key in ("requests", "items", "lost", "mismatched", "reordered",
                    "model_items_checked", "seconds"):
            setattr(out, key, getattr(out, key) + getattr(p, key))
        out.latencies += p.latencies
        out.model_latencies += p.model_latencies
        out.examples += p.examples[: max(0, 5 - len(out.examples))]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="issue-6 sizes (default: CI sizes)")
    parser.add_argument("--model", choices=("embedded", "none"), default="embedded")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--batches", type=int)
    parser.add_argument("--concurrency", type=int)
    args = parser.parse_args(argv)
    from tests.conftest import launch_server

    plan = LoadPlan() if args.full else CI_PLAN
    overrides = {k: v for k, v in (("requests", args.requests), ("batches", args.batches),
                                   ("concurrency", args.concurrency)) if v}
    if overrides:
        plan = LoadPlan(**{**asdict(plan), **overrides})
    model = args.model
    if model == "embedded":
        from reward_server.certainty import embedded_model_available

        if not embedded_model_available():
            print("embedded model not installed: rules-only", file=sys.stderr)
            model = "none"
    with tempfile.TemporaryDirectory() as tmp:
        server = launch_server(Path(tmp), model=model, log_level="warning")
        try:
            started = time.perf_counter()
            report = asyncio.run(run_load("127.0.0.1", server.port, server.process.pid, plan,
                                          model != "none"))
            report["wall_seconds"] = round(time.perf_counter() - started, 1)
        finally:
            code = server.stop()
        report["server_exit_code"] = code
    print(json.dumps(report, indent=2))
    print(json.dumps({"bench": "reliability_load", "lost": report["lost"],
                      "mismatched": report["mismatched"], "reordered": report["reordered"]}))
    return 0 if report["lost"] == report["mismatched"] == report["reordered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
