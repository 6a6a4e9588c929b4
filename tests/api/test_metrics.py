"""Prometheus exposition, scraped by a real Prometheus server, and multiprocess mode."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from reward_server.telemetry import Telemetry
from tests.conftest import free_port, metric_total

ITEMS = [
    {"completion": json.dumps({"rationale": "ok", "action": {"type": "terminate"}}),
     "ground_truth": {"type": "terminate"}},
    {"completion": "```json {} ```", "ground_truth": {"type": "click", "name": "buy_now"}},
    {"completion": json.dumps({"rationale": "I go.", "action": {"type": "terminate"}}),
     "ground_truth": {"type": "click", "name": "buy_now"}},
]


def test_metrics_report_components_failures_and_action_types(rules_server) -> None:
    before = httpx.get(rules_server.url + "/metrics").text
    httpx.post(rules_server.url + "/v1/rewards", json={"items": ITEMS}).raise_for_status()
    httpx.post(rules_server.url + "/v1/evaluate", json={"items": ITEMS[:2]}).raise_for_status()
    after = httpx.get(rules_server.url + "/metrics").text

    def delta(name: str, **labels: str) -> float:
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    assert delta("reward_request_seconds_count", route="/v1/rewards", status="200") == 1
    assert delta("reward_format_failures_total", reason="not_json") == 1
    assert delta("reward_action_type_total", predicted="terminate", ground_truth="click") == 1
    assert delta("reward_action_type_total", predicted="invalid", ground_truth="click") == 1
    # Every item is in every component's series, a format failure with the zeros the API
    # reports for it: the components' distributions add up to the reward's.
    for component in ("format", "type", "attribute", "value", "reward"):
        assert delta("reward_component_value_count", component=component) == 3, component
    assert delta("reward_component_value_sum", component="format") == 1.0
    assert delta("reward_component_value_bucket", component="format", le="0.0") == 1
    # Items per request, by the route that scored them.
    assert delta("reward_request_items_count", route="/v1/rewards") == 1
    assert delta("reward_request_items_sum", route="/v1/rewards") == 3
    assert delta("reward_request_items_count", route="/v1/evaluate") == 1
    assert delta("reward_request_items_sum", route="/v1/evaluate") == 2
    assert "reward_in_flight_requests" in after


def test_metrics_are_aggregated_across_workers(start_server) -> None:
    server = start_server(workers=2)
    for _ in range(20):
        httpx.post(server.url + "/v1/rewards", json={"items": ITEMS}).raise_for_status()
    # Every request is counted whichever worker served it; the worker that does not answer
    # the scrape writes its per-item values within Telemetry.FLUSH_SECONDS.
    deadline = time.monotonic() + 10 * Telemetry.FLUSH_SECONDS
    while True:
        text = httpx.get(server.url + "/metrics").text
        items = metric_total(text, "reward_component_value_count", component="reward")
        if items == 60 or time.monotonic() > deadline:
            break
        time.sleep(Telemetry.FLUSH_SECONDS / 5)
    ok = metric_total(text, "reward_request_seconds_count", route="/v1/rewards", status="200")
    assert ok == 20
    assert items == 60


def test_refusals_before_routing_are_counted_under_their_route(start_server) -> None:
    """A wrong key (401) or a declared body over the limit (413) is refused by middleware
    before the router runs; the latency series still names the route that was asked."""
    server = start_server(api_key="s3cret", max_body_bytes=1000)
    url = server.url + "/v1/rewards"
    assert httpx.post(url, json={"items": []}).status_code == 401
    too_big = httpx.post(url, content=b" " * 2000, headers={**server.headers,
                                                           "content-type": "application/json"})
    assert too_big.status_code == 413
    assert httpx.get(server.url + "/no/such/route", headers=server.headers).status_code == 404
    text = httpx.get(server.url + "/metrics").text

    def requests(route: str, status: str) -> float:
        return metric_total(text, "reward_request_seconds_count", route=route, status=status)

    assert requests("/v1/rewards", "401") == 1
    assert requests("/v1/rewards", "413") == 1
    assert requests("unmatched", "404") == 1
    assert requests("unmatched", "401") == 0


def test_a_client_hanging_up_mid_body_is_not_a_server_error(start_server) -> None:
    """A client that goes away while sending its body is no bug of the server: no 500 in
    the latency series, no internal_error, no error in the log."""
    server = start_server()

    def rewards_requests(text: str, status: str | None = None) -> float:
        labels = {"route": "/v1/rewards", **({"status": status} if status else {})}
        return metric_total(text, "reward_request_seconds_count", **labels)

    before = httpx.get(server.url + "/metrics").text
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                     b"\r\ncontent-length: 1000\r\n\r\n{\"items\": [")
    deadline = time.monotonic() + 30
    while True:  # until the server has finished with the request
        after = httpx.get(server.url + "/metrics").text
        if rewards_requests(after) > rewards_requests(before) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rewards_requests(after) - rewards_requests(before) == 1
    assert rewards_requests(after, "500") == rewards_requests(before, "500")
    assert rewards_requests(after, "499") - rewards_requests(before, "499") == 1
    assert metric_total(after, "reward_errors_total", kind="internal_error") == 0
    assert "unhandled error" not in server.output()
    assert "Exception in ASGI application" not in server.output()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="the prometheus server is not "
                    "installed (scripts/install --system-packages installs it)")
def test_real_prometheus_scrapes_latency_histogram(rules_server, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = rules_server.url.removeprefix("http://")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: shop-r1-reward\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(5):
            httpx.post(rules_server.url + "/v1/rewards", json={"items": ITEMS}).raise_for_status()
        query = (
            'histogram_quantile(0.99, sum by (le) '
            '(reward_request_seconds_bucket{route="/v1/rewards"}))'
        )
        deadline = time.monotonic() + 60
        result: list = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                                     params={"query": query}, timeout=5)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                result = response.json()["data"]["result"]
        assert result, "Prometheus returned no data for the latency histogram"
        p99 = float(result[0]["value"][1])
        assert 0 < p99 < 60
    finally:
        process.terminate()
        process.wait(30)


def test_observations_are_written_within_the_flush_interval() -> None:
    """Per-item values are batched, never dropped: a timer on the running loop writes them
    within FLUSH_SECONDS, with no scrape or further request to trigger it."""
    import asyncio

    from reward_server.config import RewardConfig
    from reward_server.results import NO_CERTAINTY, ItemResult
    from reward_server.rewards import Action, parse_completion
    from reward_server.rewards.compose import compose_reward
    from reward_server.telemetry import FORMAT_FAILURES

    failures = FORMAT_FAILURES.labels("too_long")
    truth = Action("terminate")
    breakdown = compose_reward(parse_completion("x" * 10, max_chars=5), truth, RewardConfig())
    telemetry = Telemetry()

    async def observe_then_wait() -> tuple[float, float, float]:
        before = failures._value.get()
        telemetry.observe_results([ItemResult(0, None, breakdown, NO_CERTAINTY)], [truth])
        right_after = failures._value.get()
        await asyncio.sleep(Telemetry.FLUSH_SECONDS * 4)
        return before, right_after, failures._value.get()

    before, right_after, later = asyncio.run(observe_then_wait())
    assert right_after == before  # batched, not written per request
    assert later == before + 1
