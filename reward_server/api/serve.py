"""``shop-r1-reward serve``: settings from flags, ``SHOP_R1_*`` variables and defaults;
uvicorn with graceful shutdown (in-flight requests finish, then the scorer stops)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from reward_server.config import ServerSettings

ENV_PREFIX = "SHOP_R1_"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="start the HTTP reward service",
        description="Every option can also be set as SHOP_R1_<OPTION> (e.g. SHOP_R1_API_KEY).",
    )
    for name, field in ServerSettings.model_fields.items():
        if name == "multiprocess_dir":
            continue
        default = field.default
        serve.add_argument(
            _flag(name),
            dest=name,
            default=None,
            help=f"{field.description or name} (default: {default!r})",
        )
    serve.set_defaults(handler=run_serve)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> ServerSettings:
    """Flags win over ``SHOP_R1_*`` environment variables, which win over defaults."""
    values: dict[str, object] = {}
    for name in ServerSettings.model_fields:
        flag_value = getattr(args, name, None)
        env_value = environ.get(ENV_PREFIX + name.upper())
        chosen = flag_value if flag_value is not None else env_value
        if chosen is not None:
            values[name] = chosen
    return ServerSettings.model_validate(values).check()


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_from(args, dict(os.environ))
    multiprocess_dir = None
    if settings.workers > 1:
        # Must be set before any worker imports prometheus_client.
        multiprocess_dir = tempfile.mkdtemp(prefix="shop-r1-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
        settings = settings.model_copy(update={"multiprocess_dir": multiprocess_dir})
    os.environ["SHOP_R1_SETTINGS_JSON"] = json.dumps(settings.model_dump())
    print(
        f"shop-r1-reward: serving on http://{settings.host}:{settings.port} "
        f"(model: {settings.model}, workers: {settings.workers}, "
        f"auth: {'on' if settings.api_key else 'off'})",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(
            "reward_server.api.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
            access_log=False,
        )
    finally:
        if multiprocess_dir:
            shutil.rmtree(multiprocess_dir, ignore_errors=True)
    return 0
