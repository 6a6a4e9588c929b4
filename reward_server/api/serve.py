"""``shop-r1-reward serve``: settings from flags, ``SHOP_R1_*`` variables and defaults (one
pydantic-settings model); uvicorn with the connection limits of
:mod:`~reward_server.api.connection_limits` and graceful shutdown (in-flight requests
finish, then the scorer stops)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from pydantic_settings import CliSettingsSource

from reward_server.config import ServerSettings

SETTINGS_ENV = "SHOP_R1_SETTINGS_JSON"
APP_FACTORY = "reward_server.api.app:create_app_from_env"


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="start the HTTP reward service",
        description=(
            "Every option can also be set as an environment variable SHOP_R1_<OPTION> "
            "(e.g. SHOP_R1_API_KEY, SHOP_R1_MAX_ITEMS); a flag wins over the variable. "
            "Give the API key as SHOP_R1_API_KEY or --api-key-file: a key on the command "
            "line is visible to other users of the machine in ps."
        ),
    )
    source = CliSettingsSource(
        ServerSettings, root_parser=serve, cli_kebab_case=True, cli_hide_none_type=True
    )
    serve.set_defaults(handler=run_serve, settings_source=source)


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """Flags win over ``SHOP_R1_*`` environment variables, which win over defaults."""
    source: CliSettingsSource = args.settings_source
    return ServerSettings(_cli_settings_source=source(parsed_args=args)).check()


def connection_limits_of(settings: ServerSettings) -> Any:
    """The :class:`~reward_server.api.connection_limits.ConnectionLimits` of ``settings``."""
    from reward_server.api.connection_limits import ConnectionLimits, default_max_connections

    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        min_rate=settings.min_rate_bytes,
        rate_grace=settings.rate_grace_seconds,
        request_timeout=settings.default_timeout_seconds,
        max_connections=settings.max_connections or default_max_connections(),
    )


def uvicorn_config(settings: ServerSettings) -> Any:
    """uvicorn's configuration for ``settings`` (the app is built in each worker)."""
    from reward_server.api.connection_limits import LimitedConfig

    limits = connection_limits_of(settings)
    return LimitedConfig(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        timeout_keep_alive=settings.keep_alive_seconds,
        access_log=False,
        connection_limits=limits,
    )


def run_serve(args: argparse.Namespace) -> int:
    from uvicorn import Server
    from uvicorn.supervisors import Multiprocess

    settings = settings_from(args)
    multiprocess_dir = None
    if settings.workers > 1:
        # Must be set before any worker imports prometheus_client.
        multiprocess_dir = tempfile.mkdtemp(prefix="shop-r1-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
        settings = settings.model_copy(update={"multiprocess_dir": multiprocess_dir})
    # Workers are fresh interpreters: they rebuild the settings from this (the app factory
    # is their entry point).
    os.environ[SETTINGS_ENV] = json.dumps(settings.model_dump())
    print(
        f"shop-r1-reward: serving on http://{settings.host}:{settings.port} "
        f"(model: {settings.model}, workers: {settings.workers}, "
        f"auth: {'on' if settings.api_key else 'off'})",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn_config(settings)
    server = Server(config)
    try:
        if settings.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    finally:
        if multiprocess_dir:
            shutil.rmtree(multiprocess_dir, ignore_errors=True)
    return 0 if settings.workers > 1 or server.started else 1
