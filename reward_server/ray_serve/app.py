"""The Serve application graph: ingress -> model, with replicas, resources and routing.

``build_application(server, cluster)`` is what ``shop-r1-reward ray-serve`` deploys;
``app_builder`` is the same for Serve's own config files (``serve run``, ``serve deploy``
and KubeRay's ``RayService``): ``import_path: reward_server.ray_serve.app:app_builder``,
with any :class:`ServerSettings` or :class:`RaySettings` field under ``args``. Service
fields not given there come from ``SHOP_R1_<FIELD>`` variables of the process that builds
the application (e.g. the API key from a Kubernetes Secret).
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application

from reward_server.config import ServerSettings
from reward_server.ray_serve.deployments import CertaintyModel, RewardIngress
from reward_server.ray_serve.settings import RaySettings, split_settings

INGRESS = "RewardIngress"
MODEL = "CertaintyModel"
# A replica whose constructor fails (model missing, out of memory) is retried this many
# times before the deployment is reported failed; Serve's default (20) hides the cause.
CONSTRUCTOR_RETRIES = 3


# Replicas report their ongoing requests every this many seconds at most (Serve's
# default), and at least three times per look-back window.
METRICS_INTERVAL_S = 10.0


def _replicas(minimum: int, maximum: int, target: float, cluster: RaySettings) -> dict[str, Any]:
    """Fixed ``num_replicas`` when the bounds are equal, else Serve autoscaling on the
    requests in flight per replica."""
    if minimum == maximum:
        return {"num_replicas": minimum}
    return {
        "autoscaling_config": {
            "min_replicas": minimum,
            "initial_replicas": minimum,
            "max_replicas": maximum,
            "target_ongoing_requests": target,
            "look_back_period_s": cluster.autoscale_look_back_s,
            "metrics_interval_s": min(METRICS_INTERVAL_S, cluster.autoscale_look_back_s / 3),
            "upscale_delay_s": cluster.upscale_delay_s,
            "downscale_delay_s": cluster.downscale_delay_s,
        }
    }


def build_application(server: ServerSettings, cluster: RaySettings) -> Application:
    """The bound application (not yet running) for these settings."""
    settings = server.model_dump()
    drain = {"graceful_shutdown_timeout_s": server.graceful_shutdown_seconds}
    model = None
    if server.model != "none":
        actor_options: dict[str, Any] = {
            "num_cpus": cluster.model_num_cpus,
            "num_gpus": cluster.model_num_gpus,
        }
        if cluster.model_resources:
            actor_options["resources"] = dict(cluster.model_resources)
        options: dict[str, Any] = {
            "name": MODEL,
            "ray_actor_options": actor_options,
            "max_ongoing_requests": cluster.model_max_ongoing_requests,
            "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
            **drain,
            **_replicas(
                cluster.model_min_replicas,
                cluster.model_max_replicas,
                cluster.model_target_ongoing_requests,
                cluster,
            ),
        }
        router = cluster.router_config()
        if router is not None:
            options["request_router_config"] = router
        model = (
            serve.deployment(CertaintyModel)
            .options(**options)
            .bind(settings, cluster.group_window_ms, cluster.metrics_endpoints)
        )
    ingress_options: dict[str, Any] = {"num_cpus": cluster.ingress_num_cpus}
    if cluster.ingress_resources:
        ingress_options["resources"] = dict(cluster.ingress_resources)
    ingress = serve.deployment(RewardIngress).options(
        name=INGRESS,
        ray_actor_options=ingress_options,
        max_ongoing_requests=cluster.ingress_max_ongoing_requests,
        max_constructor_retry_count=CONSTRUCTOR_RETRIES,
        **drain,
        **_replicas(
            cluster.ingress_min_replicas,
            cluster.ingress_max_replicas,
            cluster.ingress_target_ongoing_requests,
            cluster,
        ),
    )
    return ingress.bind(
        settings, model, cluster.model_routing == "prompt_hash", cluster.metrics_endpoints
    )


def app_builder(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: reward_server.ray_serve.app:app_builder``).

    The HTTP address is the cluster's (the config's ``http_options``), which a config
    deployed this way usually opens beyond loopback; so unless ``host`` says otherwise
    (in ``args`` or ``SHOP_R1_HOST``) the service counts as exposed and needs an API key.
    """
    values = dict(args)
    if "host" not in values and "SHOP_R1_HOST" not in os.environ:
        values["host"] = "0.0.0.0"
    server, cluster = split_settings(values)
    return build_application(server, cluster)
