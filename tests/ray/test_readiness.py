"""``/readyz`` is 200 only when every deployment is ready: with the model deployment
unable to place its replica (it asks for a resource no node has), the ingress runs,
answers ``/healthz``, rules and ``/v1/metrics/targets`` (its own endpoint), and
``/readyz`` says the model is loading."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.ray.conftest import API_KEY, undeploy, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "unready", "/unready"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_readyz_waits_for_the_model_deployment(ray_cluster) -> None:
    from ray import serve

    from reward_server.config import ServerSettings
    from reward_server.ray_serve.app import build_application
    from reward_server.ray_serve.settings import RaySettings

    # A short drain: deleting the app waits that long for the replica never placed.
    server = ServerSettings(model="embedded", api_key=API_KEY, graceful_shutdown_seconds=1)
    cluster = RaySettings(ingress_num_cpus=0, model_num_cpus=0,
                          model_resources={"no_node_has_this": 1})
    # Deployed without the launcher (whose check would refuse it) and without waiting
    # for the application to run, which it never will.
    serve.run_many([serve.RunTarget(build_application(server, cluster), name=APP,
                                    route_prefix=PREFIX)],
                   wait_for_applications_running=False)
    url = ray_cluster.url(PREFIX)
    try:
        def ingress_answers() -> Any:
            try:
                return httpx.get(url + "/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ingress_answers, 120, "the ingress answering")
        for _ in range(3):  # several probes of the model deployment, all unready
            ready = httpx.get(url + "/readyz", timeout=10)
            assert ready.status_code == 503, ready.text
            assert ready.headers.get("retry-after")
            assert "loading" in ready.json()["error"]["message"]
            time.sleep(2.5)
        rules = httpx.post(url + "/v1/rewards", headers=AUTH, timeout=30, json={
            "items": [{"completion": "{}", "ground_truth": {"type": "terminate"}}],
            "self_certainty_source": "none"})
        assert rules.status_code == 200 and rules.json()["results"][0]["format_ok"] is False
        # Service discovery still lists what runs (the ingress), rather than failing
        # because the model deployment has no replica to ask.
        targets = httpx.get(url + "/v1/metrics/targets", headers=AUTH, timeout=30)
        assert targets.status_code == 200, targets.text
        assert [t["labels"]["deployment"] for t in targets.json()] == ["RewardIngress"]
        status = serve.status().applications[APP].deployments["CertaintyModel"]
        assert status.replica_states.get("RUNNING", 0) == 0
    finally:
        undeploy(APP)
