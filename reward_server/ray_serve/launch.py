"""Start the application on a Ray cluster: checks first, then deploy, wait, drain.

Every check that can fail on the user's input runs before anything is deployed, and
each failure is a :class:`LaunchError` whose message names the cause and the fix:
Ray missing or too old, a cluster address nothing answers on, GPUs or custom resources
the cluster does not have.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from reward_server.config import ServerSettings
from reward_server.ray_serve.settings import RAY_SERIES, RaySettings

log = logging.getLogger(__name__)

INSTALL_HINT = f"pip install 'shop-r1-reward[ray]' (ray[serve]=={RAY_SERIES}.*)"
DEFAULT_GCS_PORT = 6379
CLIENT_PORT = 10001
ADDRESS_PROBE_TIMEOUT_S = 3.0


class LaunchError(RuntimeError):
    """The application cannot start; the message says why and what to do."""


def require_ray() -> Any:
    """The ``ray`` module with Serve, at a version this application runs on."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.serve")
    except ImportError as exc:
        raise LaunchError(
            f"Ray Serve is not installed in this environment ({exc}); install it with: "
            f"{INSTALL_HINT}"
        ) from None
    version = importlib.metadata.version("ray")
    handle_module = importlib.import_module("ray.serve.handle")
    needed = hasattr(handle_module.DeploymentHandle, "broadcast")
    try:
        importlib.import_module("ray.serve.experimental.consistent_hash_router")
    except ImportError:
        needed = False
    if not needed:
        raise LaunchError(
            f"Ray {version} lacks what this application uses (DeploymentHandle.broadcast, "
            f"the consistent-hash router); install the tested version: {INSTALL_HINT}"
        )
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for an explicit address; None for ``auto`` / ``local``."""
    if address in ("auto", "local"):
        return None
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, str(CLIENT_PORT if client else DEFAULT_GCS_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(
            f"--ray-address {address!r} is not an address: use auto, HOST:PORT (the head "
            "node's GCS port, 6379 by default) or ray://HOST:PORT (Ray Client, 10001)"
        )
    return host, int(port)


def check_reachable(address: str) -> None:
    """Refuse an explicit address nothing listens on, before Ray tries (and hangs)."""
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=ADDRESS_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise LaunchError(
            f"cannot reach the Ray cluster at {address} ({reason}): start it with "
            f"`ray start --head --port {port}` there, check the host and port (the head "
            "node's GCS port, or ray://HOST:10001 for Ray Client), or leave --ray-address "
            "out to start a local cluster"
        ) from None


def connect(ray: Any, cluster: RaySettings) -> bool:
    """Join the cluster (or start a local one); True when this process started it."""
    if cluster.ray_address is not None:
        check_reachable(cluster.ray_address)
        try:
            ray.init(address=cluster.ray_address, log_to_driver=False)
        except Exception as exc:
            raise LaunchError(
                f"could not join the Ray cluster at {cluster.ray_address}: "
                f"{type(exc).__name__}: {exc}. If the cluster uses token authentication, "
                "set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to its token"
            ) from None
        return False
    options: dict[str, Any] = {"log_to_driver": False}
    if cluster.num_cpus is not None:
        options["num_cpus"] = cluster.num_cpus
    if cluster.num_gpus is not None:
        options["num_gpus"] = cluster.num_gpus
    ray.init(**options)
    return True


def check_resources(resources: dict[str, float], server: ServerSettings,
                    cluster: RaySettings, where: str) -> None:
    """Refuse replicas the cluster cannot place at all (the fewest of each kind)."""
    wanted: list[tuple[str, str, float, int]] = [
        ("--ingress-resources", name, amount, cluster.ingress_min_replicas)
        for name, amount in cluster.ingress_resources.items()
    ]
    if server.model != "none":
        wanted.append(("--model-num-gpus", "GPU", cluster.model_num_gpus,
                       cluster.model_min_replicas))
        wanted += [
            ("--model-resources", name, amount, cluster.model_min_replicas)
            for name, amount in cluster.model_resources.items()
        ]
    for flag, name, per_replica, replicas in wanted:
        need, have = per_replica * replicas, resources.get(name, 0.0)
        if need <= have:
            continue
        if name == "GPU":
            raise LaunchError(
                f"{flag} {per_replica:g} x {replicas} model replica(s) needs {need:g} "
                f"GPU(s), but the Ray cluster at {where} has {have:g}: add GPU nodes "
                "(`ray start --num-gpus N`), or score on CPU with --model-num-gpus 0"
            )
        raise LaunchError(
            f"{flag} asks {per_replica:g} of {name!r} per replica ({need:g} for "
            f"{replicas}), but the Ray cluster at {where} has {have:g}: start a node with "
            f"`ray start --resources '{{\"{name}\": N}}'`, or drop it from {flag}"
        )
    if server.model != "none" and server.device == "cuda" and cluster.model_num_gpus == 0:
        raise LaunchError(
            "--device cuda with --model-num-gpus 0 gives the model replicas no GPU: "
            "set --model-num-gpus (e.g. 1), or --device auto/cpu"
        )


HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"
# HAProxy's tune.maxrewrite default: the part of each buffer headers may not use.
HAPROXY_MAXREWRITE = 1024


def use_haproxy(server: ServerSettings, cluster: RaySettings) -> None:
    """Have the local cluster put HAProxy in front of the ingress replicas.

    Ray reads the flag from the environment of its processes when they start, so it
    applies to a cluster this process starts, and must be set before Ray is imported."""
    if cluster.ray_address is not None:
        raise LaunchError(
            "--serve-proxy haproxy applies to a local cluster only: on an existing cluster "
            f"the proxy is the cluster's; start each of its nodes with {HAPROXY_FLAG}=1 "
            "(`ray start` and the head alike) and leave --serve-proxy out"
        )
    if not server.api_key:
        raise LaunchError(
            "--serve-proxy haproxy binds every interface (Ray forces it, so HAProxy on other "
            "nodes can reach the replicas): pass --api-key or set SHOP_R1_API_KEY"
        )
    os.environ[HAPROXY_FLAG] = "1"
    for name, value in haproxy_limits(server).items():
        os.environ.setdefault(name, value)  # an operator's own value wins


def haproxy_limits(server: ServerSettings) -> dict[str, str]:
    """The service's connection limits as the variables Ray 2.60 renders into its HAProxy
    configuration (read by the proxy actors when they start):

    * ``tune.bufsize``: the header block HAProxy accepts is the buffer less its 1,024
      reserved bytes, so ``--max-header-bytes`` holds (a larger block is answered 400);
    * ``timeout client``: the longest pause of a client, sending its request or reading
      its answer, is ``--body-timeout-seconds`` (Ray's default is an hour);
    * ``maxconn``: ``--max-connections`` when it is given (else Ray's 4,096); further
      connections wait in the kernel's accept queue.

    Ray leaves ``timeout http-request`` unset and offers no variable for it: the total time
    of a header block is bounded only by a front (deploy/haproxy/front.cfg)."""
    limits = {
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(server.max_header_bytes + HAPROXY_MAXREWRITE),
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(math.ceil(server.body_timeout_seconds)),
    }
    if server.max_connections is not None:
        limits["RAY_SERVE_HAPROXY_MAXCONN"] = str(server.max_connections)
    return limits


@dataclass
class Running:
    """A deployed application and how to take it down."""

    ray: Any
    server: ServerSettings
    cluster: RaySettings
    started_cluster: bool
    url: str

    def shutdown(self) -> None:
        """Delete the application (its replicas finish their in-flight requests first);
        stop Serve and Ray too when this process started the cluster."""
        from ray import serve

        try:
            serve.delete(self.cluster.app_name)
        finally:
            if self.started_cluster:
                serve.shutdown()
                self.ray.shutdown()


def start(server: ServerSettings, cluster: RaySettings, ready_timeout_s: float = 600.0) -> Running:
    """Check, connect, deploy and wait until every deployment is ready."""
    if server.workers != 1:
        raise LaunchError(
            "--workers does not apply on Ray: set --ingress-min-replicas / "
            "--ingress-max-replicas instead"
        )
    if cluster.serve_proxy == "haproxy":
        use_haproxy(server, cluster)
    ray = require_ray()
    started_cluster = connect(ray, cluster)
    try:
        where = cluster.ray_address or "this machine (local cluster)"
        check_resources(ray.cluster_resources(), server, cluster, where)
        url = deploy(server, cluster, ready_timeout_s)
    except BaseException:
        if started_cluster:
            ray.shutdown()
        raise
    return Running(ray, server, cluster, started_cluster, url)


def deploy(server: ServerSettings, cluster: RaySettings, ready_timeout_s: float) -> str:
    from ray import serve

    from reward_server.ray_serve.app import build_application

    # Serve's own request_timeout_s is left unset: its 408 keeps the connection open to a
    # trickling client, while the app's bounds (api/upload_limits.py) close it.
    serve.start(http_options={"host": server.host, "port": server.port,
                              "keep_alive_timeout_s": server.keep_alive_seconds})
    replacing = cluster.app_name in serve.status().applications
    try:
        try:
            handle = serve.run(
                build_application(server, cluster),
                name=cluster.app_name,
                route_prefix=cluster.route_prefix,
            )
        except RuntimeError as exc:
            causes = failed_deployments(cluster.app_name) or str(exc)
            raise LaunchError(f"the application failed to deploy: {causes}") from None
        wait_ready(handle, ready_timeout_s)
    except BaseException:
        # What this command deployed must not linger, holding resources, on a cluster it
        # joined; an application it was replacing is left as Serve left it.
        if not replacing:
            try:
                serve.delete(cluster.app_name)
            except Exception:  # the launch error below matters more
                log.exception("could not delete the failed application %r", cluster.app_name)
        raise
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
    prefix = cluster.route_prefix.rstrip("/")
    return f"http://{host}:{server.port}{prefix}"


def failed_deployments(app_name: str) -> str:
    """Each failed deployment of ``app_name`` with the exception its replicas raised, read
    from the end of its status message: ``CertaintyModel: ModelLoadError: cannot load ...``."""
    from ray import serve
    from ray.serve.schema import DeploymentStatus

    app = serve.status().applications.get(app_name)
    if app is None:
        return ""
    causes = []
    for name, deployment in app.deployments.items():
        if deployment.status == DeploymentStatus.DEPLOY_FAILED and deployment.message:
            causes.append(f"{name}: {last_exception(str(deployment.message))}")
    return "; ".join(causes)


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception)): ")


def last_exception(text: str, limit: int = 1000) -> str:
    """The last ``SomeError: message`` of a traceback, its message's further lines joined
    with spaces and the type's module path dropped; the text's last line when none is found."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for at in range(len(lines) - 1, -1, -1):
        match = _EXCEPTION_LINE.match(lines[at])
        if match:
            message = " ".join([lines[at][match.end() :], *lines[at + 1 :]])
            return f"{match.group(1)}: {message}"[:limit]
    return lines[-1][:limit] if lines else ""


def wait_ready(handle: Any, timeout_s: float, probe_timeout_s: float = 30.0) -> None:
    """Until an ingress replica reports its model deployment ready, or ``LaunchError``.

    Each probe waits at most ``probe_timeout_s`` and never past the deadline; a probe that
    times out (a replica still busy starting) is asked again, not raised as a traceback.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LaunchError(f"the model deployment was not ready after {timeout_s:g}s")
        try:
            if handle.readiness.remote().result(timeout_s=min(probe_timeout_s, left))["ready"]:
                return
        except TimeoutError:
            continue
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT; return the signal number."""
    received: list[int] = []
    done = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        done.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        done.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return received[0]
