"""Two raylets: the model deployment asks for a resource only the second node has, so
its replica runs there while the ingress runs on the head; requests cross nodes and
answer as the single-process service does."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ray.conftest import (
    API_KEY,
    HEAD_NODE,
    MODEL_NODE,
    deploy,
    single_process,
    stats_of,
    undeploy,
)
from tests.ray.workload import grpo_groups, save_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "twonode", "/twonode"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ITEMS = [item for group in grpo_groups(4, 6, seed=21) for item in group]


def _server(model_dir: Path) -> Any:
    from reward_server.config import ServerSettings

    return ServerSettings(model=str(model_dir), api_key=API_KEY)


async def test_model_replica_runs_on_the_other_node(ray_cluster, tmp_path: Path) -> None:
    from ray import serve

    from reward_server.ray_serve.settings import RaySettings

    model_dir = save_tiny_model(tmp_path / "tiny", seed=3)
    cluster = RaySettings(
        ingress_min_replicas=1, ingress_max_replicas=1, ingress_num_cpus=0,
        ingress_resources={HEAD_NODE: 0.1}, model_num_cpus=0,
        model_resources={MODEL_NODE: 0.5},
    )
    url = await asyncio.to_thread(deploy, ray_cluster, APP, PREFIX, _server(model_dir), cluster)
    try:
        ingress = serve.get_deployment_handle("RewardIngress", APP)
        where = await ingress.readiness.remote()
        (model,) = await asyncio.to_thread(stats_of, APP, "CertaintyModel")
        assert where["node_id"] == ray_cluster.head_node_id
        assert model["node_id"] == ray_cluster.model_node_id != where["node_id"]
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as client:
            got = (await client.post("/v1/rewards", json={"items": ITEMS})).json()["results"]
        async with single_process(_server(model_dir)) as reference:
            answer = await reference.post("/v1/rewards", json={"items": ITEMS}, headers=AUTH)
            want = answer.json()["results"]
        assert [r["id"] for r in got] == [it["id"] for it in ITEMS]
        for g, w in zip(got, want, strict=True):
            s_got, s_want = g["components"]["self_certainty"], w["components"]["self_certainty"]
            assert (s_got is None) == (s_want is None)
            assert s_got is None or math.isclose(s_got, s_want, rel_tol=1e-6)
            assert g["format_ok"] == w["format_ok"] and g["action"] == w["action"]
        (after,) = await asyncio.to_thread(stats_of, APP, "CertaintyModel")
        assert after["items"] == sum(r["format_ok"] for r in got)
    finally:
        await asyncio.to_thread(undeploy, APP)
