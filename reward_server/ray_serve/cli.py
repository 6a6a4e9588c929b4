"""``shop-r1-reward ray-serve``: the service as a Ray Serve application, one command.

Takes every ``serve`` option (``--host``/``--port`` become the Serve proxy's address) and
the cluster options of :class:`RaySettings`; each is also ``SHOP_R1_<OPTION>``. Without
``--ray-address`` it starts a local Ray cluster; with one it joins that cluster (a
trainer's own) and deploys beside what runs there. It returns when SIGTERM or SIGINT
arrives, after the application drained (``--detach``: right after it is ready, leaving it
running).

Slow clients: the app itself cuts an upload past the request's deadline, under
--min-rate-bytes or paused --body-timeout-seconds (408) on both entries. Header size,
header time, answer reading and --max-connections hold only where the entry can keep
them (HAProxy: header size, pauses, the cap; Serve's Python proxy: none of them): put
deploy/haproxy/front.cfg in front (docs/SCALING.md, "Slow clients, per entry").
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from reward_server.config import ServerSettings
from reward_server.ray_serve.settings import ENV_PREFIX, RaySettings, split_settings

# Not options of this command: one process per ingress replica is Ray's job here.
SKIPPED = {"multiprocess_dir", "workers", "app_bounds_uploads"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _source(args: argparse.Namespace, name: str) -> str:
    """Where a setting's value came from: its flag, else its variable."""
    return _flag(name) if getattr(args, name, None) is not None else ENV_PREFIX + name.upper()


def _fields() -> dict[str, Any]:
    fields = {n: f for n, f in ServerSettings.model_fields.items() if n not in SKIPPED}
    fields.update(RaySettings.model_fields)
    return fields


def add_ray_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ray-serve",
        help="serve on a Ray cluster (Ray Serve: replicas on many machines, one address)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in _fields().items():
        parser.add_argument(
            _flag(name),
            dest=name,
            default=None,
            help=f"{field.description or name} (default: {field.default!r})",
        )
    parser.add_argument("--detach", action="store_true",
                        help="return once the application is ready and leave it running")
    parser.add_argument("--ready-timeout", type=float, default=600.0,
                        help="seconds to wait for every deployment to be ready")
    parser.set_defaults(handler=run_ray_serve)


def settings_from(args: argparse.Namespace) -> tuple[ServerSettings, RaySettings]:
    """Flags win over ``SHOP_R1_*`` variables, which win over the defaults."""
    flags = {name: getattr(args, name) for name in _fields() if getattr(args, name, None)
             is not None}
    return split_settings(flags)


def run_ray_serve(args: argparse.Namespace) -> int:
    from reward_server.ray_serve.launch import LaunchError, start, wait_for_signal

    try:
        server, cluster = settings_from(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        where = f"{_source(args, str(first['loc'][0]))}: " if first["loc"] else ""
        print(f"shop-r1-reward: {where}{message}", file=sys.stderr)
        return 2
    if args.detach and cluster.ray_address is None:
        print("shop-r1-reward: --detach needs --ray-address: a local cluster ends with "
              "this process", file=sys.stderr)
        return 2
    try:
        running = start(server, cluster, args.ready_timeout)
    except LaunchError as exc:
        print(f"shop-r1-reward: {exc}", file=sys.stderr)
        return 2
    print(
        f"shop-r1-reward: ready on {running.url} (Ray Serve application "
        f"{cluster.app_name!r}, model: {server.model}, auth: "
        f"{'on' if server.api_key else 'off'})",
        file=sys.stderr,
        flush=True,
    )
    if args.detach:
        return 0
    wait_for_signal()
    print("shop-r1-reward: draining and stopping", file=sys.stderr, flush=True)
    running.shutdown()
    return 0
