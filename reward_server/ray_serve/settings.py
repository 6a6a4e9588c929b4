"""Settings of the Ray Serve application: how many replicas of each kind, where they run
and how requests reach them. Imports no Ray (the CLI validates them before Ray loads).

The service settings themselves (model, limits, API key, host and port of the HTTP
entry point) stay in :class:`~reward_server.config.ServerSettings`; these only add what
a cluster needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reward_server.config import ServerSettings

# The Ray minor version this application is built and tested against (the `ray` extra
# pins it): the deployment handle's broadcast() and the consistent-hash router it uses
# appeared in it.
RAY_SERIES = "2.60"

ENV_PREFIX = "SHOP_R1_"
PROMPT_HASH_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"

RoutingMode = Literal["prompt_hash", "balanced"]
ProxyKind = Literal["python", "haproxy"]
BackpressureMode = Literal["spill", "wait"]
Role = Literal["ingress", "model"]
ROLES: tuple[Role, ...] = ("ingress", "model")
# Custom Ray resources, given as JSON text (flag or variable) or as a mapping (a Serve
# config's args); the validator below parses the text, so that an empty value is {}.
Resources = Annotated[dict[str, float], NoDecode]


@dataclass(frozen=True)
class ReplicaSettings:
    """What Serve is told about one deployment's replicas: the ``<role>_*`` settings."""

    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    max_ongoing_requests: int
    num_cpus: float
    resources: dict[str, float]
    num_gpus: float | None = None  # None: a deployment without the setting (the ingress)


def _replica_fields(
    role: Role, *, title: str, work: str, max_replicas: int, target: float, when_full: str,
    gpus: bool, resources_example: str = "",
) -> type[BaseModel]:
    """The settings each deployment has, as fields named ``<role>_<setting>`` (flags
    ``--<role>-<setting>``, variables ``SHOP_R1_<ROLE>_<SETTING>``); ``gpus`` adds
    ``<role>_num_gpus`` (otherwise a replica gets none)."""
    replica = f"{role} replica"
    chosen: dict[str, Any] = {
        "min_replicas": (int, Field(1, ge=1, description=f"fewest {title} replicas")),
        "max_replicas": (int, Field(max_replicas, ge=1, description=f"most {title} replicas")),
        "target_ongoing_requests": (float, Field(
            target, gt=0, description=f"{work} in flight per {replica} the autoscaler aims at"
        )),
        "max_ongoing_requests": (int, Field(
            256, ge=1, description=f"{work} in flight per {replica} before {when_full}"
        )),
        "num_cpus": (float, Field(1.0, ge=0, description=f"CPUs reserved per {replica}")),
        "resources": (Resources, Field(
            default_factory=dict,
            description=f"custom Ray resources per {replica}, as JSON{resources_example}",
        )),
    }
    if gpus:
        chosen["num_gpus"] = (float, Field(0.0, ge=0, description=f"GPUs per {replica} (0: CPU)"))
    return create_model(
        f"{role.capitalize()}ReplicaSettings",
        __module__=__name__,
        **{f"{role}_{name}": field for name, field in chosen.items()},
    )


_IngressFields = _replica_fields(
    "ingress", title="HTTP ingress", work="requests", max_replicas=4, target=16.0,
    when_full="it queues", gpus=False,
)
_ModelFields = _replica_fields(
    "model", title="model", work="prompt groups", max_replicas=1, target=64.0,
    when_full="backpressure", gpus=True,
    resources_example=' (e.g. {"reward_gpu_node": 1})',
)


# The bases' order puts the ingress fields first, then the model's, then the rest (the
# order of the command's options).
class RaySettings(BaseSettings, _ModelFields, _IngressFields):  # type: ignore[misc,valid-type]
    """Replica counts, resources and routing of the two deployments.

    * ``RewardIngress``: the FastAPI service (every route, auth, limits); rules are scored
      here. Autoscaled between ``ingress_min_replicas`` and ``ingress_max_replicas`` on
      the requests each replica has in flight (``ingress_target_ongoing_requests``).
    * ``CertaintyModel``: the self-certainty model, ``model_num_gpus`` / ``model_num_cpus``
      per replica (``model_resources`` adds custom Ray resources, e.g. to pin it to
      labelled nodes). With ``model_routing="prompt_hash"`` the items of one prompt go to
      one replica (a consistent hash of the prompt), where its micro-batcher encodes the
      prompt once for the whole group. When that replica already has
      ``model_max_ongoing_requests`` calls, ``on_model_backpressure="spill"`` tries the
      next ``spill_replicas`` replicas on the ring and ``"wait"`` waits for it (strict
      affinity). A replica holds the first call of a prompt ``group_window_ms`` for the
      rest of its group (:mod:`.coalesce`).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    ray_address: str | None = Field(
        None,
        description="Ray cluster to join: 'auto', HOST:PORT (GCS) or ray://HOST:PORT; "
        "unset starts a local cluster",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (unset: all)")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of a local cluster (unset: all)")
    app_name: str = Field("shop-r1-reward", min_length=1, description="Serve application name")
    serve_proxy: ProxyKind = Field(
        "python",
        description="HTTP entry of a local cluster: Serve's Python proxy, or HAProxy in front "
        "of the ingress replicas' own HTTP servers (Ray's RAY_SERVE_ENABLE_HA_PROXY; binds "
        "all interfaces, so it needs an API key)",
    )
    route_prefix: str = Field("/", description="HTTP route prefix of the application")

    model_routing: RoutingMode = Field(
        "prompt_hash",
        description="prompt_hash: a prompt's items meet on one replica; balanced: Ray's default",
    )
    on_model_backpressure: BackpressureMode = Field(
        "spill", description="a full model replica: spill to the next on the ring, or wait"
    )
    spill_replicas: int = Field(1, ge=1, description="replicas tried after a full one (spill)")
    group_window_ms: float = Field(
        500.0, ge=0, le=10000,
        description="a model replica holds a prompt's first call this long for its group's "
        "other members, then scores them as one (0: off)",
    )

    autoscale_look_back_s: float = Field(
        30.0, gt=0, description="seconds of ongoing-request history each scaling decision averages"
    )
    upscale_delay_s: float = Field(10.0, ge=0, description="seconds of load before scaling up")
    downscale_delay_s: float = Field(60.0, ge=0, description="seconds idle before scaling down")
    metrics_endpoints: bool = Field(
        True, description="each replica serves its reward_* metrics on its own port"
    )

    @field_validator("ingress_resources", "model_resources", mode="before")
    @classmethod
    def _resources_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"not a JSON object: {exc}") from None
        return value

    @field_validator("route_prefix")
    @classmethod
    def _prefix_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("route_prefix must start with '/'")
        return value

    @model_validator(mode="after")
    def _bounds_ordered(self) -> RaySettings:
        for role in ROLES:
            replicas = self.replicas(role)
            if replicas.max_replicas < replicas.min_replicas:
                raise ValueError(f"{role}_max_replicas must be >= {role}_min_replicas")
            if any(v <= 0 for v in replicas.resources.values()):
                raise ValueError(f"{role}_resources amounts must be positive")
        return self

    def replicas(self, role: Role) -> ReplicaSettings:
        """The ``<role>_*`` settings of one deployment (a setting it lacks, such as the
        ingress's GPUs, is None)."""
        names = [f.name for f in fields(ReplicaSettings)]
        present = [name for name in names if f"{role}_{name}" in type(self).model_fields]
        return ReplicaSettings(**{name: getattr(self, f"{role}_{name}") for name in present})

    def router_config(self) -> dict[str, Any] | None:
        """Serve's ``request_router_config`` for the model deployment (None: Ray's default).

        The consistent-hash router keys on the handle's ``session_id``, which the ingress
        sets to the prompt's hash; ``num_fallback_replicas`` is the spill width (0 waits
        for the prompt's own replica)."""
        if self.model_routing != "prompt_hash":
            return None
        fallback = self.spill_replicas if self.on_model_backpressure == "spill" else 0
        return {
            "request_router_class": PROMPT_HASH_ROUTER,
            "request_router_kwargs": {"num_fallback_replicas": fallback},
        }


def split_settings(values: Mapping[str, Any]) -> tuple[ServerSettings, RaySettings]:
    """Service and cluster settings from one flat mapping (flags, or a Serve config's
    ``args``); a field missing there comes from its ``SHOP_R1_<FIELD>`` variable (each
    settings class reads the environment itself), else its default. Unknown keys are
    refused by name."""
    known = set(ServerSettings.model_fields) | set(RaySettings.model_fields)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    service = {k: v for k, v in values.items() if k in ServerSettings.model_fields}
    cluster = {k: v for k, v in values.items() if k in RaySettings.model_fields}
    # Ray's HTTP servers, not this project's, read the requests: the app bounds uploads.
    service["app_bounds_uploads"] = True
    return ServerSettings(**service).check(), RaySettings(**cluster)
