"""HTTP routes: thin; validation is in the wire models, logic in the service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response

from reward_server import __version__, telemetry
from reward_server.api.bodies import add_body_schemas, body_openapi, validated_body
from reward_server.api.context import AppContext
from reward_server.api.errors import ApiError, Forbidden, NotReady, PayloadTooLarge
from reward_server.config import MAX_COMPLETION_CHARS, PROFILES
from reward_server.protocol import (
    MAX_ID_CHARS,
    MAX_PROMPT_CHARS,
    MAX_PROMPT_MESSAGES,
    MAX_TOKEN_IDS,
    ErrorResponse,
    EvaluateRequest,
    RewardRequest,
    RewardResponse,
)
from reward_server.results import json_bytes
from reward_server.rewards.parsing import (
    MAX_GROUND_TRUTH_FIELD_CHARS,
    MAX_GROUND_TRUTH_JSON_CHARS,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 413, 422, 429, 503, 504)
}
JSON = "application/json"


def context_of(request: Request) -> AppContext:
    # Read directly rather than through Depends(): dependency resolution cost a
    # measurable share of a one-item request.
    return request.app.state.context  # type: ignore[no-any-return]


def check_count(request: Request, count: int, param: str) -> None:
    """Refuse more than ``--max-items`` items (413 naming ``param``); else record the count
    under the request's route."""
    limit = context_of(request).settings.max_items
    if count > limit:
        raise PayloadTooLarge(f"{count} items > limit {limit}", param)
    telemetry.child(telemetry.REQUEST_ITEMS, request.scope["route"].path).observe(count)


async def rewards(request: Request) -> Response:
    """Score a batch: every component of every item, in input order."""
    ctx = context_of(request)
    body = await validated_body(request, RewardRequest)
    check_count(request, len(body.items), "items")
    scored = await ctx.service.score(body, ctx.deadline_from(request.headers))
    return Response(json_bytes(scored.as_wire()), media_type=JSON)


async def evaluate(request: Request) -> dict[str, Any]:
    """REWARD_CONTRACT.md §6 metrics (exact / type accuracy, macro-F1, per type)."""
    ctx = context_of(request)
    body = await validated_body(request, EvaluateRequest)
    check_count(request, len(body.items), "items")
    metrics = await ctx.service.evaluate(body)
    return {"metrics": metrics.as_dict(), "config_hash": ctx.service.config.config_hash()}


async def healthz(request: Request) -> dict[str, str]:
    """Liveness: the process serves; fails only when the model could not be loaded."""
    ctx = context_of(request)
    if ctx.load_error:
        raise NotReady(f"model failed to load: {ctx.load_error}")
    return {"status": "ok"}


async def readyz(request: Request) -> dict[str, Any]:
    """Readiness: the model (if any) is loaded and warm."""
    ctx = context_of(request)
    if ctx.load_error:
        raise NotReady(f"model failed to load: {ctx.load_error}")
    if not ctx.service.ready:
        raise NotReady("the scoring model is loading", retry_after=5)
    return {"status": "ready", "model": ctx.scorer.model_name if ctx.scorer else None}


async def config(request: Request) -> dict[str, Any]:
    """The effective reward config, the profile it starts from (and the profiles a request
    may name instead), its hash, the model and the limits."""
    ctx = context_of(request)
    settings = ctx.settings
    return {
        "version": __version__,
        "profile": settings.profile,
        "profiles": sorted(PROFILES),
        "config": ctx.service.config.model_dump(),
        "config_hash": ctx.service.config.config_hash(),
        "model": ctx.scorer.model_name if ctx.scorer else None,
        "self_certainty_source_default": ctx.service.default_source,
        "limits": {
            "max_items": settings.max_items,
            "max_queue_items": settings.max_queue_items,
            "max_body_bytes": settings.max_body_bytes,
            "max_header_bytes": settings.max_header_bytes,
            "max_completion_chars_ceiling": MAX_COMPLETION_CHARS,
            "max_ground_truth_field_chars": MAX_GROUND_TRUTH_FIELD_CHARS,
            "max_ground_truth_json_chars": MAX_GROUND_TRUTH_JSON_CHARS,
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "max_prompt_messages": MAX_PROMPT_MESSAGES,
            "max_token_ids": MAX_TOKEN_IDS,
            "max_id_chars": MAX_ID_CHARS,
            "default_timeout_seconds": settings.default_timeout_seconds,
            "header_timeout_seconds": settings.header_timeout_seconds,
            "body_timeout_seconds": settings.body_timeout_seconds,
        },
    }


async def reload_model(payload: dict[str, str], request: Request) -> dict:
    """Swap in new weights from ``{"model_dir": ...}`` (under the configured reload root)."""
    ctx = context_of(request)
    if not ctx.settings.api_key or not ctx.settings.reload_root:
        raise Forbidden("model reload needs the server started with an API key and reload root")
    if ctx.scorer is None:
        raise Forbidden("this server has no scoring model")
    model_dir = payload.get("model_dir")
    if not isinstance(model_dir, str) or not model_dir:
        raise ApiError("model_dir (a directory path) is required", "model_dir")
    try:
        await ctx.scorer.reload(model_dir)
    except (ValueError, OSError, RuntimeError) as exc:  # ModelLoadError is a RuntimeError
        raise ApiError(str(exc), "model_dir") from None
    return {"status": "reloaded", "model": ctx.scorer.model_name}


async def metrics(request: Request) -> Response:
    body, content_type = telemetry.render_metrics(context_of(request).settings.multiprocess_dir)
    return Response(body, media_type=content_type)


def add_routes(app: FastAPI) -> None:
    """Register every route on ``app`` itself: FastAPI matches an included router's
    routes through an extra routing layer, a measurable share of a one-item request."""
    app.post(
        "/v1/rewards", response_model=RewardResponse, responses=ERRORS,
        openapi_extra=body_openapi(RewardRequest),
    )(rewards)
    app.post("/v1/evaluate", responses=ERRORS, openapi_extra=body_openapi(EvaluateRequest))(
        evaluate
    )
    add_body_schemas(app, [RewardRequest, EvaluateRequest])
    app.get("/healthz")(healthz)
    app.get("/readyz")(readyz)
    app.get("/v1/config")(config)
    app.post("/v1/reload", responses=ERRORS)(reload_model)
    app.get("/metrics", include_in_schema=False)(metrics)
