"""The app factory: the only composition root. It builds every serving object from
:class:`~reward_server.config.ServerSettings` and wires them into one FastAPI app."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from reward_server import __version__
from reward_server.api.context import AppContext
from reward_server.api.errors import register_error_handlers
from reward_server.api.middleware import (
    BearerAuthMiddleware,
    BodyLimitMiddleware,
    CancelledRequestMiddleware,
    MetricsMiddleware,
)
from reward_server.api.routes import add_routes
from reward_server.api.trainer_routes import add_trainer_routes
from reward_server.certainty.factory import scorer_for
from reward_server.config import ServerSettings, load_config
from reward_server.service import RewardService, ServiceOptions
from reward_server.telemetry import Telemetry

if TYPE_CHECKING:
    from reward_server.certainty.scorer_protocol import Scorer

PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")


def create_app(
    settings: ServerSettings | None = None, scorer: Scorer | None = None
) -> FastAPI:
    """Build the service. ``scorer`` overrides the one the settings would build (tests)."""
    settings = (settings or ServerSettings()).check()
    telemetry = Telemetry()
    if scorer is None:
        scorer = scorer_for(settings, telemetry)
    service = RewardService(
        load_config(settings.profile, settings.config_path),
        scorer,
        telemetry,
        ServiceOptions(on_certainty_failure=settings.on_certainty_failure),
    )
    context = AppContext(settings=settings, service=service, scorer=scorer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await context.start()
        try:
            yield
        finally:
            await context.stop()
            telemetry.flush()

    app = FastAPI(
        title="shop-r1-reward",
        version=__version__,
        description="Shop-R1 rewards (format, hierarchical action, self-certainty) over HTTP.",
        lifespan=lifespan,
    )
    app.state.context = context
    add_routes(app)
    add_trainer_routes(app)
    register_error_handlers(app)
    # Added innermost first: metrics see every response, auth runs before the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.app_bounds_uploads:
        from reward_server.api.serve import connection_limits_of
        from reward_server.api.upload_limits import UploadLimitMiddleware

        app.add_middleware(UploadLimitMiddleware, limits=connection_limits_of(settings))
    if settings.api_key:
        app.add_middleware(
            BearerAuthMiddleware, api_key=settings.api_key, public_paths=PUBLIC_PATHS
        )
    app.add_middleware(CancelledRequestMiddleware)
    app.add_middleware(MetricsMiddleware, routes=app.router.routes)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn workers (``--factory``): settings arrive as JSON in
    ``SHOP_R1_SETTINGS_JSON``, written by ``shop-r1-reward serve``."""
    from reward_server.api.serve import SETTINGS_ENV

    return create_app(ServerSettings.model_validate(json.loads(os.environ[SETTINGS_ENV])))
