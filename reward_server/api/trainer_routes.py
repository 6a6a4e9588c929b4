"""Trainer-native routes: the request and response shapes that RL trainers' own reward
clients speak (OpenRLHF ``--reward.remote_url``, slime ``remote_rm``), scored by the same
service as ``/v1/rewards``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError

from reward_contract import strip_end_markers
from reward_server.api.errors import ApiError
from reward_server.api.routes import ERRORS, check_count, context_of
from reward_server.protocol import (
    OpenRLHFRequest,
    OpenRLHFResponse,
    RewardItem,
    RewardRequest,
    SlimeRequest,
    describe_validation_error,
)
from reward_server.results import ItemResult, result_dict


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
    ctx = context_of(request)
    count = len(body.query)
    prompts = body.prompts if body.prompts is not None else [""] * count
    labels = body.labels if body.labels is not None else [None] * count
    for name, values in (("prompts", prompts), ("labels", labels)):
        if len(values) != count:
            raise ApiError(f"{len(values)} {name} for {count} queries", name)
    check_count(ctx, count, "query")
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
    ctx = context_of(request)
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


def add_trainer_routes(app: FastAPI) -> None:
    """Register the trainer-native routes on ``app``."""
    app.post("/get_reward", response_model=OpenRLHFResponse, responses=ERRORS)(openrlhf_reward)
    app.post("/slime/reward", responses=ERRORS)(slime_reward)
