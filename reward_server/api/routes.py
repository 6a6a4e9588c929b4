"""HTTP routes: thin; validation is in the wire models, logic in the service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from reward_server import telemetry
from reward_server.api.context import AppContext
from reward_server.api.errors import ApiError, Forbidden, NotReady, PayloadTooLarge
from reward_server.protocol import (
    ErrorResponse,
    EvaluateRequest,
    OpenRLHFRequest,
    OpenRLHFResponse,
    RewardItem,
    RewardRequest,
    RewardResponse,
    SlimeRequest,
    describe_validation_error,
)
from reward_server.results import ItemResult, json_bytes, result_dict
from reward_server.service import strip_end_markers

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 413, 422, 429, 503, 504)
}
JSON = "application/json"


def _context(request: Request) -> AppContext:
    # Read directly rather than through Depends(): dependency resolution cost a
    # measurable share of a one-item request.
    return request.app.state.context  # type: ignore[no-any-return]


def _check_count(ctx: AppContext, count: int, param: str) -> None:
    if count > ctx.settings.max_items:
        raise PayloadTooLarge(f"{count} items > limit {ctx.settings.max_items}", param)
    telemetry.observe_many(telemetry.child(telemetry.REQUEST_ITEMS, param), (count,))


async def rewards(
    body: RewardRequest, request: Request
) -> Response:
    """Score a batch: every component of every item, in input order."""
    ctx = _context(request)
    _check_count(ctx, len(body.items), "items")
    scored = await ctx.service.score(body, ctx.deadline_from(request.headers))
    return Response(json_bytes(scored.as_wire()), media_type=JSON)


async def evaluate(body: EvaluateRequest, request: Request) -> dict[str, Any]:
    """REWARD_SPEC section-6 metrics (exact / type accuracy, macro-F1, per type)."""
    ctx = _context(request)
    _check_count(ctx, len(body.items), "items")
    metrics = await ctx.service.evaluate(body)
    return {"metrics": metrics.as_dict(), "config_hash": ctx.service.config.config_hash()}


def _item(completion: str, label: Any, prompt: Any, index: int | None) -> RewardItem:
    where = "labels" if index is not None else "label"
    param = f"{where}[{index}]" if index is not None else where
    if label is None or label == "":
        raise ApiError("a ground-truth label is required to score", param)
    try:
        return RewardItem(completion=completion, ground_truth=label, prompt=prompt)
    except ValidationError as exc:
        field, message = describe_validation_error(exc.errors()[0])
        # The label is the ground truth: "ground_truth.name" becomes "labels[i].name".
        suffix = field.removeprefix("ground_truth")
        raise ApiError(message, param + suffix if suffix != field else param) from None


def _extra_logs(results: list[ItemResult]) -> dict[str, list[float]]:
    breakdowns = [r.breakdown for r in results]
    logs: dict[str, list[float]] = {
        "format": [b.format for b in breakdowns],
        "type": [b.type for b in breakdowns],
        "attribute": [b.attribute for b in breakdowns],
        "value": [b.value for b in breakdowns],
        "format_ok": [float(b.failure_reason is None) for b in breakdowns],
    }
    certainties = [b.self_certainty for b in breakdowns]
    # Logged as means by the trainer: a mean over a mix of values and gaps would mislead.
    if certainties and all(value is not None for value in certainties):
        logs["self_certainty"] = certainties  # type: ignore[assignment]
    logs["self_certainty_missing"] = [float(value is None) for value in certainties]
    return logs


async def openrlhf_reward(
    body: OpenRLHFRequest, request: Request
) -> dict[str, Any]:
    """OpenRLHF remote reward (``--reward.remote_url http://HOST:PORT/get_reward``).

    The response text is the query with the prompt stripped from its front and trailing
    end-of-turn markers removed; labels are the ground truths (JSON strings).
    """
    ctx = _context(request)
    count = len(body.query)
    prompts = body.prompts if body.prompts is not None else [""] * count
    labels = body.labels if body.labels is not None else [None] * count
    for name, values in (("prompts", prompts), ("labels", labels)):
        if len(values) != count:
            raise ApiError(f"{len(values)} {name} for {count} queries", name)
    _check_count(ctx, count, "query")
    items = []
    for index, (query, prompt, label) in enumerate(zip(body.query, prompts, labels, strict=True)):
        if not query.startswith(prompt):
            raise ApiError("the prompt is not a prefix of the query", f"query[{index}]")
        response_text = strip_end_markers(query[len(prompt) :])
        items.append(_item(response_text, label, prompt or None, index))
    scored = await ctx.service.score(
        RewardRequest(items=items), ctx.deadline_from(request.headers)
    )
    return {
        "rewards": [r.breakdown.reward for r in scored.results],
        "scores": [r.breakdown.score for r in scored.results],
        "extra_logs": _extra_logs(scored.results),
    }


async def slime_reward(
    body: SlimeRequest, request: Request
) -> dict[str, Any]:
    """slime remote reward (``--rm-type remote_rm --rm-url http://HOST:PORT/slime/reward
    --reward-key reward``): one sample in, a flat dict with ``reward`` and every component."""
    ctx = _context(request)
    item = _item(strip_end_markers(body.response), body.label, body.prompt, None)
    scored = await ctx.service.score(
        RewardRequest(items=[item]), ctx.deadline_from(request.headers)
    )
    result = result_dict(scored.results[0])
    failure = result["format_error"]
    return {
        "reward": result["reward"],
        "score": result["score"],
        **result["components"],
        "format_ok": result["format_ok"],
        "format_error": failure["reason"] if failure else None,
        "config_hash": scored.config_hash,
    }


async def healthz(request: Request) -> dict[str, str]:
    """Liveness: the process serves; fails only when the model could not be loaded."""
    ctx = _context(request)
    if ctx.load_error:
        raise NotReady(f"model failed to load: {ctx.load_error}")
    return {"status": "ok"}


async def readyz(request: Request) -> dict[str, Any]:
    """Readiness: the model (if any) is loaded and warm."""
    ctx = _context(request)
    if ctx.load_error:
        raise NotReady(f"model failed to load: {ctx.load_error}")
    if not ctx.service.ready:
        raise NotReady("the scoring model is loading", retry_after=5)
    return {"status": "ready", "model": ctx.scorer.model_name if ctx.scorer else None}


async def config(request: Request) -> dict[str, Any]:
    """The effective reward config, its hash, the model and the limits."""
    ctx = _context(request)
    settings = ctx.settings
    return {
        "config": ctx.service.config.model_dump(),
        "config_hash": ctx.service.config.config_hash(),
        "model": ctx.scorer.model_name if ctx.scorer else None,
        "self_certainty_source_default": ctx.service.default_source,
        "limits": {
            "max_items": settings.max_items,
            "max_body_bytes": settings.max_body_bytes,
            "default_timeout_seconds": settings.default_timeout_seconds,
        },
    }


async def reload_model(payload: dict[str, str], request: Request) -> dict:
    """Swap in new weights from ``{"model_dir": ...}`` (under the configured reload root)."""
    ctx = _context(request)
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
    body, content_type = telemetry.render_metrics(_context(request).settings.multiprocess_dir)
    return Response(body, media_type=content_type)


def add_routes(app: FastAPI) -> None:
    """Register every route on ``app`` itself: FastAPI matches an included router's
    routes through an extra routing layer, a measurable share of a one-item request."""
    app.post("/v1/rewards", response_model=RewardResponse, responses=ERRORS)(rewards)
    app.post("/v1/evaluate", responses=ERRORS)(evaluate)
    app.post("/get_reward", response_model=OpenRLHFResponse, responses=ERRORS)(openrlhf_reward)
    app.post("/slime/reward", responses=ERRORS)(slime_reward)
    app.get("/healthz")(healthz)
    app.get("/readyz")(readyz)
    app.get("/v1/config")(config)
    app.post("/v1/reload", responses=ERRORS)(reload_model)
    app.get("/metrics", include_in_schema=False)(metrics)
