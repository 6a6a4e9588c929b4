"""Overload: beyond the scorer queue's capacity the server answers 429
with Retry-After at once (not a growing queue, not a timeout), and the client's backoff
then completes every item. A real server with the embedded model and --max-queue-items 8
(skipped with a reason where the embedded model is not installed).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time

import httpx
import pytest

from client import AsyncRewardClient, RetryPolicy
from tests.conftest import metric_total
from tests.reliability.conftest import SMALL_QUEUE
from tests.reliability.workload import ALPHA, make_cases

QUEUE = SMALL_QUEUE
FULL = os.environ.get("RELIABILITY_FULL") == "1"
CLIENT_ITEMS = 256 if FULL else 24  # 4-item chunks, 8 in flight: 24 items > the queue


@pytest.fixture
def small_queue_server(small_queue_model_server):
    return small_queue_model_server


def _ok_cases(count: int) -> list:
    return [c for c in make_cases(count * 3, seed=11) if c.expected.format_ok][:count]


def test_beyond_capacity_is_429_with_retry_after_quickly(small_queue_server) -> None:
    cases = _ok_cases(96)

    async def burst() -> list[tuple[int, float, str | None]]:
        async with httpx.AsyncClient(timeout=120) as http:
            async def one(i: int) -> tuple[int, float, str | None]:
                items = [c.item(f"o{i}-{k}") for k, c in enumerate(cases[4 * i:4 * i + 4])]
                started = time.perf_counter()
                response = await http.post(small_queue_server.url + "/v1/rewards",
                                           json={"items": items})
                return (response.status_code, time.perf_counter() - started,
                        response.headers.get("Retry-After"))
            return await asyncio.gather(*(one(i) for i in range(24)))

    outcomes = asyncio.run(burst())
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 429}, statuses
    refused = [(seconds, retry) for status, seconds, retry in outcomes if status == 429]
    served = [seconds for status, seconds, _ in outcomes if status == 200]
    assert refused and served, statuses
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused)
    latencies = [seconds for seconds, _ in refused]
    print(f"429 x{len(refused)}: p50 {statistics.median(latencies) * 1000:.0f} ms, max "
          f"{max(latencies) * 1000:.0f} ms; 200 x{len(served)}: max {max(served):.2f} s")
    # Refused at once: quicker than the served requests, which queue for the model (a
    # relative check; absolute times belong to benchmarks, not to tests on a busy machine).
    assert statistics.median(latencies) < max(served)


def test_client_backoff_completes_every_item(small_queue_server) -> None:
    cases = _ok_cases(CLIENT_ITEMS)
    items = [c.item(f"c{i}") for i, c in enumerate(cases)]
    before = _overloaded(small_queue_server.url)

    async def run():
        policy = RetryPolicy(max_attempts=100, base_backoff=0.2, max_backoff=2.0)
        async with AsyncRewardClient(small_queue_server.url, chunk_size=4, max_concurrency=8,
                                     retry=policy, timeout=300) as client:
            return await client.score(items, self_certainty_source="model")

    started = time.perf_counter()
    batch = asyncio.run(run())
    elapsed = time.perf_counter() - started
    refusals = _overloaded(small_queue_server.url) - before
    print(f"{len(items)} model items through a {QUEUE}-item queue in {elapsed:.1f} s; "
          f"{refusals:.0f} 429s absorbed by the client's backoff")
    assert refusals > 0, "the run never overloaded the server: not a proof"
    assert [r.id for r in batch.results] == [item["id"] for item in items]
    for result, case in zip(batch.results, cases, strict=True):
        certainty = result.components.self_certainty
        assert certainty is not None and math.isfinite(certainty)
        assert result.reward == pytest.approx(case.expected.reward + ALPHA * certainty,
                                              rel=1e-12)


def _overloaded(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return metric_total(text, "reward_errors_total", kind="overloaded")
