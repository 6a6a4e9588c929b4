"""Process faults: SIGKILL mid-run and a restart on the same port; SIGTERM
drains in-flight requests. Real ``shop-r1-reward serve`` processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx

from client import AsyncRewardClient, RetryPolicy
from tests.conftest import free_port, launch_server, metric_total
from tests.reliability.workload import check_result, make_cases


def test_sigkill_mid_run_and_restart_every_reward_exactly_once(tmp_path) -> None:
    port = free_port()
    first = launch_server(tmp_path, port=port, log_level="warning")
    cases = make_cases(1000, seed=3)
    items = [cases[i % len(cases)].item(f"k{i}") for i in range(10_000)]
    policy = RetryPolicy(max_attempts=400, base_backoff=0.05, max_backoff=0.5,
                         endpoint_cooldown=0.1)
    second = None

    async def run() -> tuple[object, bool, dict]:
        nonlocal second
        async with AsyncRewardClient(first.url, chunk_size=100, max_concurrency=4,
                                     retry=policy, timeout=180) as client:
            task = asyncio.ensure_future(client.score(items, self_certainty_source="none"))
            # Kill once the first server has answered part of the run.
            while _items_served(first.url) < 2_000:
                assert not task.done(), "the run finished before the kill"
                await asyncio.sleep(0.02)
            served_before = _items_served(first.url)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
            killed_mid_run = not task.done()
            second = await asyncio.to_thread(launch_server, tmp_path, port=port,
                                             log_level="warning")
            batch = await task
            return batch, killed_mid_run, {"before": served_before,
                                           "after": _items_served(second.url)}

    try:
        batch, killed_mid_run, served = asyncio.run(run())
    finally:
        if second is not None:
            second.stop()
    assert killed_mid_run
    assert 0 < served["before"] < len(items) and served["after"] > 0
    results = batch.results
    assert len(results) == len(items)
    ids = [r.id for r in results]
    assert ids == [item["id"] for item in items] and len(set(ids)) == len(ids)
    for i, result in enumerate(results):
        case = cases[i % len(cases)]
        assert result.reward == case.expected.reward, (i, result)
        assert result.score == case.expected.score


def _items_served(url: str) -> float:
    """Items answered by ``/v1/rewards`` so far (from the server's Prometheus histogram)."""
    try:
        text = httpx.get(url + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return metric_total(text, "reward_request_items_sum", route="/v1/rewards")


def _in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return metric_total(text, "reward_in_flight_requests")


def test_sigterm_drains_in_flight_request(tmp_path) -> None:
    """A slow request in flight when SIGTERM arrives still completes with 200 and every
    result; new connections are refused after it; the process then exits."""
    server = launch_server(tmp_path, max_items=50_000, log_level="info")
    cases = make_cases(2000, seed=5)
    items = [cases[i % len(cases)].item(i) for i in range(15_000)]
    outcome: dict = {}

    def slow_request() -> None:
        started = time.perf_counter()
        try:
            outcome["response"] = httpx.post(server.url + "/v1/rewards",
                                             json={"items": items}, timeout=120)
        except httpx.HTTPError as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.perf_counter() - started
        outcome["done_at"] = time.monotonic()

    thread = threading.Thread(target=slow_request)
    thread.start()
    # In flight: the gauge counts the slow request and this /metrics request itself.
    deadline = time.monotonic() + 30
    while _in_flight(server.url) < 2:
        assert time.monotonic() < deadline and thread.is_alive(), "never saw it in flight"
        time.sleep(0.01)
    assert thread.is_alive(), "the request was not slow enough to be in flight"
    sigterm_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        httpx.get(server.url + "/healthz", timeout=2)
    except httpx.TransportError:
        refused = True
    thread.join(120)
    server.process.wait(60)
    exited_at = time.monotonic()
    assert "error" not in outcome, outcome.get("error")
    response = outcome["response"]
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert len(results) == len(items)
    for index, result in enumerate(results):
        assert check_result(result, cases[index % len(cases)], index, index) is None
    assert outcome["done_at"] > sigterm_at and exited_at >= outcome["done_at"] - 0.5
    assert refused, "the server still accepted new connections after SIGTERM"
    log = server.output()
    assert "Waiting for connections to close" in log or "Shutting down" in log, log[-2000:]
    # uvicorn re-raises the captured SIGTERM after a clean shutdown: -15, not a crash code.
    assert server.process.returncode in (0, -signal.SIGTERM), log[-2000:]
