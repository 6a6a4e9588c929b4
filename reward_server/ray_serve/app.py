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
from reward_server.ray_serve.settings import RaySettings, Role, split_settings

INGRESS = "RewardIngress"
MODEL = "CertaintyModel"
# A replica whose constructor fails (model missing, out of memory) is retried this many
# times before the deployment is reported failed; Serve's default (20) hides the cause.
CONSTRUCTOR_RETRIES = 3


# Replicas report their ongoing requests every this many seconds at most (Serve's
# default), and at least three times per look-back window.
METRICS_INTERVAL_S = 10.0


def _deployment_options(name: str, role: Role, server: ServerSettings,
                        cluster: RaySettings) -> dict[str, Any]:
    """Serve options of one deployment: its replicas' resources and load limits, a fixed
    ``num_replicas`` when its bounds are equal, else autoscaling on the requests in flight
    per replica."""
    replicas = cluster.replicas(role)
    actor_options: dict[str, Any] = {"num_cpus": replicas.num_cpus}
    if replicas.num_gpus is not None:
        actor_options["num_gpus"] = replicas.num_gpus
    if replicas.resources:
        actor_options["resources"] = dict(replicas.resources)
    options: dict[str, Any] = {
        "name": name,
        "ray_actor_options": actor_options,
        "max_ongoing_requests": replicas.max_ongoing_requests,
        "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
        "graceful_shutdown_timeout_s": server.graceful_shutdown_seconds,
    }
    if replicas.min_replicas == replicas.max_replicas:
        options["num_replicas"] = replicas.min_replicas
        return options
    options["autoscaling_config"] = {
        "min_replicas": replicas.min_replicas,
        "initial_replicas": replicas.min_replicas,
        "max_replicas": replicas.max_replicas,
        "target_ongoing_requests": replicas.target_ongoing_requests,
        "look_back_period_s": cluster.autoscale_look_back_s,
        "metrics_interval_s": min(METRICS_INTERVAL_S, cluster.autoscale_look_back_s / 3),
        "upscale_delay_s": cluster.upscale_delay_s,
        "downscale_delay_s": cluster.downscale_delay_s,
    }
    return options


def build_application(server: ServerSettings, cluster: RaySettings) -> Application:
    """The bound application (not yet running) for these settings."""
    settings = server.model_dump()
    model = None
    if server.model != "none":
        options = _deployment_options(MODEL, "model", server, cluster)
        router = cluster.router_config()
        if router is not None:
            options["request_router_config"] = router
        model = (
            serve.deployment(CertaintyModel)
            .options(**options)
            .bind(settings, cluster.group_window_ms, cluster.metrics_endpoints)
        )
    ingress = serve.deployment(RewardIngress).options(
        **_deployment_options(INGRESS, "ingress", server, cluster)
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
