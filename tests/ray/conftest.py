"""Fixtures of the Ray Serve tests: one real two-node Ray cluster for the session.

The cluster is ``ray.cluster_utils.Cluster``: a head raylet and a second raylet, each
with its own metrics agent, on this machine. The second node alone has the custom
resource ``reward_model_node`` and the head alone ``reward_head_node``, so a deployment
can be pinned to either. Serve's proxy listens on a free port of 127.0.0.1; each test
module deploys its own application under its own route prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

MODEL_NODE = "reward_model_node"
HEAD_NODE = "reward_head_node"
API_KEY = "ray-test-key"
# Logical CPUs: the replicas of the tests reserve none, so this only bounds Ray's own
# task workers; the machine's cores are shared by every process anyway.
HEAD_CPUS, WORKER_CPUS = 4, 2


@dataclass(frozen=True)
class RayCluster:
    address: str
    http_port: int
    head_node_id: str
    model_node_id: str
    session_dir: str

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{prefix}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]' "
        "(scripts/install --dev installs it)"
    )
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": HEAD_CPUS,
            "resources": {HEAD_NODE: 1},
            # The dashboard writes Ray's Prometheus file_sd (every node's metrics agent).
            "include_dashboard": True,
            "dashboard_port": free_port(),
            "metrics_export_port": free_port(),
        },
    )
    worker = cluster.add_node(
        num_cpus=WORKER_CPUS, resources={MODEL_NODE: 1}, metrics_export_port=free_port()
    )
    ray.init(address=cluster.address, log_to_driver=False)
    http_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": http_port})
    try:
        yield RayCluster(
            address=cluster.address,
            http_port=http_port,
            head_node_id=cluster.head_node.node_id,
            model_node_id=worker.node_id,
            session_dir=cluster.head_node.get_session_dir_path(),
        )
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


def deploy(
    ray_cluster: RayCluster, name: str, prefix: str, server: Any, cluster: Any
) -> str:
    """``build_application`` of the settings, run under ``name`` and ``prefix`` on the
    session cluster; returns its base URL once an ingress replica reports it ready."""
    from ray import serve

    from reward_server.ray_serve.app import build_application
    from reward_server.ray_serve.launch import wait_ready

    handle = serve.run(build_application(server, cluster), name=name, route_prefix=prefix)
    wait_ready(handle, timeout_s=240)
    return ray_cluster.url(prefix)


def undeploy(name: str) -> None:
    from ray import serve

    serve.delete(name)


def stats_of(app: str, deployment: str, with_keys: bool = False) -> list[dict[str, Any]]:
    """``stats`` of every replica of a deployment (the driver is not in an event loop)."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app)
    return handle.broadcast("stats", with_keys).results(timeout_s=60)


def running_replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return status.deployments[deployment].replica_states.get("RUNNING", 0)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout:g}s")
        time.sleep(interval)


async def post_each(url: str, items: list[dict], headers: dict[str, str], order: list[int],
                    concurrency: int = 64) -> list[dict]:
    """Each item in its own ``POST /v1/rewards``, all in flight at once (up to
    ``concurrency``), sent in ``order``; returns the one result of each, by item index."""
    results: list[dict | None] = [None] * len(items)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=240, limits=limits) as c:

        async def one(index: int) -> None:
            async with gate:
                response = await c.post("/v1/rewards", json={"items": [items[index]]})
            response.raise_for_status()
            (result,) = response.json()["results"]
            results[index] = result

        await asyncio.gather(*(one(i) for i in order))
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@asynccontextmanager
async def single_process(server: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The single-process service (``create_app``, its lifespan, its model) in this
    process, behind an httpx client (no default headers): the reference the Ray
    application must equal."""
    from reward_server.api.app import create_app

    app = create_app(server)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://single", timeout=240
    ) as client:
        deadline = time.monotonic() + 240
        while (await client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "the single-process service never got ready"
            await asyncio.sleep(0.1)
        yield client
