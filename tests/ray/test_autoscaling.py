"""The ingress deployment scales 1 -> 2 -> 1 replicas on its requests in flight, under a
bounded load, and answers every request of the load correctly while it does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.ray.conftest import API_KEY, deploy, running_replicas, single_process, undeploy
from tests.ray.workload import rules_items, without_timings

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "scale", "/scale"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BATCH = rules_items(400, seed=9)
LOAD_LIMIT_S, SETTLE_LIMIT_S = 60.0, 60.0


def _server() -> Any:
    from reward_server.config import ServerSettings

    return ServerSettings(model="none", api_key=API_KEY)


def _cluster() -> Any:
    from reward_server.ray_serve.settings import RaySettings

    return RaySettings(
        ingress_min_replicas=1, ingress_max_replicas=2, ingress_num_cpus=0,
        ingress_target_ongoing_requests=1, autoscale_look_back_s=2.0,
        upscale_delay_s=1.0, downscale_delay_s=3.0,
    )


async def _load_until_two(url: str, want: dict) -> tuple[int, float]:
    """8 clients posting 400-item batches until a second replica runs (then 3 s more,
    so that both answer); every answer must equal ``want``. Bounded by LOAD_LIMIT_S."""
    started = time.monotonic()
    scaled_at: list[float] = []
    sent = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() - started < LOAD_LIMIT_S:
            if scaled_at and time.monotonic() - scaled_at[0] > 3.0:
                return
            answer = await client.post("/v1/rewards", json={"items": BATCH})
            assert answer.status_code == 200, answer.text
            assert without_timings(answer.json()) == want
            sent += 1

    async def watch() -> None:
        while time.monotonic() - started < LOAD_LIMIT_S and not scaled_at:
            if await asyncio.to_thread(running_replicas, APP, "RewardIngress") >= 2:
                scaled_at.append(time.monotonic())
            await asyncio.sleep(0.5)

    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client:
        await asyncio.gather(watch(), *(client_loop(client) for _ in range(8)))
    assert scaled_at, f"no second replica after {LOAD_LIMIT_S:g}s of load"
    return sent, scaled_at[0] - started


async def test_ingress_scales_up_under_load_and_back_down(ray_cluster) -> None:
    async with single_process(_server()) as reference:
        want = without_timings(
            (await reference.post("/v1/rewards", json={"items": BATCH}, headers=AUTH)).json()
        )
    url = await asyncio.to_thread(deploy, ray_cluster, APP, PREFIX, _server(), _cluster())
    try:
        assert await asyncio.to_thread(running_replicas, APP, "RewardIngress") == 1
        sent, _ = await _load_until_two(url, want)
        assert sent > 0
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while await asyncio.to_thread(running_replicas, APP, "RewardIngress") != 1:
            assert time.monotonic() < deadline, "did not scale back to 1 replica when idle"
            await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(undeploy, APP)
