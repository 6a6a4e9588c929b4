"""The Ray Serve application without a model (two ingress replicas) answers exactly as
the single-process service: every route, schema, error shape, limit and the bearer
auth; results in input order; and one Prometheus job sees every replica's series."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, metric_total
from tests.ray.conftest import API_KEY, deploy, single_process, undeploy
from tests.ray.workload import rules_items, without_timings

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "rules", "/rules"
MAX_ITEMS, MAX_BODY = 400, 256 * 1024
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ITEMS = rules_items(300, seed=3)


def _server() -> Any:
    from reward_server.config import ServerSettings

    return ServerSettings(model="none", api_key=API_KEY, max_items=MAX_ITEMS,
                          max_body_bytes=MAX_BODY)


@pytest.fixture(scope="module")
def rules_url(ray_cluster) -> Any:
    from reward_server.ray_serve.settings import RaySettings

    cluster = RaySettings(ingress_min_replicas=2, ingress_max_replicas=2, ingress_num_cpus=0)
    yield deploy(ray_cluster, APP, PREFIX, _server(), cluster)
    undeploy(APP)


def _openrlhf_body(items: list[dict]) -> dict:
    prompts = [f"<|im_start|>user\nStep {i}<|im_end|>\n<|im_start|>assistant\n"
               for i in range(len(items))]
    return {
        "query": [p + it["completion"] + "<|im_end|>"
                  for p, it in zip(prompts, items, strict=True)],
        "prompts": prompts,
        "labels": [json.dumps(it["ground_truth"]) for it in items],
    }


# (method, path, body or raw bytes, headers): every route, valid and invalid.
CASES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/v1/rewards", {"items": ITEMS}, AUTH),
    ("POST", "/v1/rewards", {"items": []}, AUTH),
    ("POST", "/v1/rewards", {"items": ITEMS[:20], "config": {"dars": 1.0}}, AUTH),
    ("POST", "/v1/rewards", {"items": [{**it, "self_certainty": 2.5} for it in ITEMS[:5]],
                             "self_certainty_source": "provided"}, AUTH),
    ("POST", "/v1/rewards", {"items": ITEMS[:2], "self_certainty_source": "provided"}, AUTH),
    ("POST", "/v1/rewards", {"items": ITEMS[:2], "self_certainty_source": "model"}, AUTH),
    ("POST", "/v1/rewards", {"items": [{"completion": "{}", "ground_truth": {"type": "fly"}}]},
     AUTH),
    ("POST", "/v1/rewards", {"itemz": []}, AUTH),
    ("POST", "/v1/rewards", b"{not json", AUTH),
    ("POST", "/v1/rewards", {"items": ITEMS[:1] * (MAX_ITEMS + 1)}, AUTH),
    ("POST", "/v1/rewards", b" " * (MAX_BODY + 1), AUTH),
    ("POST", "/v1/rewards", {"items": ITEMS[:2]}, {}),
    ("POST", "/v1/rewards", {"items": ITEMS[:2]}, {"Authorization": "Bearer wrong"}),
    ("POST", "/v1/evaluate", {"items": ITEMS}, AUTH),
    ("POST", "/get_reward", _openrlhf_body(ITEMS[:64]), AUTH),
    ("POST", "/get_reward", {"query": [], "prompts": [], "labels": []}, AUTH),
    ("POST", "/get_reward", {"query": ["x"], "prompts": ["y"], "labels": ["{}"]}, AUTH),
    ("POST", "/slime/reward", {"prompt": "p", "response": ITEMS[0]["completion"],
                               "label": ITEMS[0]["ground_truth"]}, AUTH),
    ("POST", "/v1/reload", {"model_dir": "/tmp"}, AUTH),
    ("GET", "/v1/config", None, AUTH),
    ("GET", "/healthz", None, {}),
    ("GET", "/readyz", None, {}),
    ("GET", "/no/such/route", None, AUTH),
]
COMPARED_HEADERS = ("content-type", "www-authenticate", "retry-after")


async def _answer(client: httpx.AsyncClient, method: str, path: str, body: Any,
                  headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    if isinstance(body, bytes):
        response = await client.request(method, path, content=body,
                                        headers={**headers, "content-type": "application/json"})
    else:
        response = await client.request(method, path, json=body, headers=headers)
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    if isinstance(payload, dict):
        payload = without_timings(payload)
    kept = {h: response.headers[h] for h in COMPARED_HEADERS if h in response.headers}
    return response.status_code, payload, kept


async def test_every_route_answers_as_the_single_process_service(rules_url) -> None:
    """Same status, same body (timings aside), same content type and auth/retry headers,
    for valid and invalid requests of every route; 300 real steps in the first."""
    async with single_process(_server()) as reference, httpx.AsyncClient(
        base_url=rules_url, timeout=120
    ) as ray_app:
        for method, path, body, headers in CASES:
            want = await _answer(reference, method, path, body, headers)
            got = await _answer(ray_app, method, path, body, headers)
            assert got == want, f"{method} {path}: Ray {got[:2]} != single process {want[:2]}"


async def test_results_keep_order_across_replicas_and_concurrent_requests(rules_url) -> None:
    """Many concurrent requests with shuffled ids, over both ingress replicas: each
    answer lines up with its own request, in order, nothing lost or repeated."""
    rng = random.Random(7)
    async with single_process(_server()) as reference:
        answer = await reference.post("/v1/rewards", json={"items": ITEMS}, headers=AUTH)
        expected = answer.json()["results"]
    by_id = {r["id"]: r for r in expected}
    batches = []
    for _ in range(24):
        picked = rng.sample(range(len(ITEMS)), rng.randint(1, 40))
        batches.append([{**ITEMS[i], "id": f"{i}-{rng.random()}"} for i in picked])
    async with httpx.AsyncClient(base_url=rules_url, headers=AUTH, timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/rewards", json={"items": b}) for b in batches)
        )
    for batch, answer in zip(batches, answers, strict=True):
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert [r["id"] for r in results] == [it["id"] for it in batch]
        assert [r["index"] for r in results] == list(range(len(batch)))
        for item, result in zip(batch, results, strict=True):
            want = by_id[int(item["id"].split("-")[0])]
            assert {**result, "id": None, "index": None} == {**want, "id": None, "index": None}


def _targets(rules_url: str) -> list[dict]:
    response = httpx.get(rules_url + "/v1/metrics/targets", headers=AUTH, timeout=30)
    response.raise_for_status()
    return response.json()


def _direct_total(targets: list[dict]) -> list[float]:
    counts = []
    for group in targets:
        (address,) = group["targets"]
        text = httpx.get(f"http://{address}/metrics", timeout=10).text
        counts.append(metric_total(text, "reward_request_items_count", route="/v1/rewards"))
    return counts


def _prometheus_query(port: int, query: str) -> list[dict]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                             params={"query": query}, timeout=5)
    except httpx.TransportError:
        return []
    return response.json()["data"]["result"] if response.status_code == 200 else []


def test_one_prometheus_job_sees_every_replica_and_totals_add_up(
    rules_url, ray_cluster, tmp_path: Path
) -> None:
    """``/v1/metrics/targets`` lists each ingress replica's endpoint (http_sd); a real
    Prometheus scraping them sums to exactly the requests sent, and Ray's own
    ``ray_serve_*`` series come from Ray's file_sd in the same configuration."""
    if shutil.which("prometheus") is None:
        pytest.skip("the prometheus server is not installed (scripts/install "
                    "--system-packages installs it)")
    targets = _targets(rules_url)
    assert sorted(t["labels"]["deployment"] for t in targets) == ["RewardIngress"] * 2
    assert len({t["labels"]["replica"] for t in targets}) == 2
    before = _direct_total(targets)
    sent = 120

    async def load() -> None:
        # Concurrent, so that the proxy spreads them over both replicas.
        async with httpx.AsyncClient(base_url=rules_url, headers=AUTH, timeout=60) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/rewards", json={"items": ITEMS[i : i + 3]})
                  for i in range(sent))
            )
        assert all(a.status_code == 200 for a in answers)

    asyncio.run(load())
    time.sleep(0.5)  # per-item series are written within 0.25 s of a request
    after = _direct_total(targets)
    assert sum(after) - sum(before) == sent
    assert all(a > b for a, b in zip(after, before, strict=True)), "one replica got nothing"

    port = free_port()
    config = tmp_path / "prometheus.yml"
    ray_sd = Path(ray_cluster.session_dir) / "prom_metrics_service_discovery.json"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: shop-r1-reward\n    scrape_interval: 1s\n"
        "    http_sd_configs:\n"
        f"      - url: {rules_url}/v1/metrics/targets\n        refresh_interval: 2s\n"
        # Prometheus 2.42 sends http_sd credentials without a scheme unless told.
        f"        authorization:\n          type: Bearer\n          credentials: {API_KEY}\n"
        "  - job_name: ray\n    scrape_interval: 1s\n"
        f"    file_sd_configs:\n      - files: ['{ray_sd}']\n"
    )
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        total_query = 'sum(reward_request_items_count{route="/v1/rewards",job="shop-r1-reward"})'
        count_query = 'count(reward_request_items_count{route="/v1/rewards",job="shop-r1-reward"})'
        deadline = time.monotonic() + 60
        total = instances = None
        serve_series: list = []
        while time.monotonic() < deadline:
            time.sleep(1)
            found = _prometheus_query(port, total_query)
            counted = _prometheus_query(port, count_query)
            if found and counted:
                total, instances = float(found[0]["value"][1]), int(counted[0]["value"][1])
            serve_series = _prometheus_query(
                port, 'count({__name__=~"ray_serve_.+", job="ray"})'
            )
            if instances == 2 and total == sum(after) and serve_series:
                break
        scraped = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
        health = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"])
                  for t in scraped["data"]["activeTargets"]]
        assert instances == 2, f"Prometheus did not find both ingress replicas: {health}"
        assert total == sum(after), f"Prometheus total {total} != replicas' {sum(after)}"
        assert serve_series, f"no ray_serve_* series from Ray's service discovery: {health}"
    finally:
        process.terminate()
        process.wait(30)
