"""Trainer-native routes: the request and response shapes that RL trainers' own reward
clients speak (OpenRLHF ``--reward.remote_url``, slime ``remote_rm``), scored by the same
service as ``/v1/rewards``.

Both wait for a model that is still loading, within the request's deadline
(``X-Request-Timeout`` or the server default), instead of answering 503 at once: the
trainers' clients retry a few times a second apart and then drop the reward, so a 503
during start-up would lose every reward of the first steps. A load that failed answers
503 at once with the load error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError

from reward_contract import strip_end_markers
from reward_contract.certainty import APPROXIMATE_DETAILS, approximate_reason
from reward_contract.logs import log_columns, log_row, slime_reward_fields
from reward_contract.samples import (
    SLIME_LABEL_HINT,
    SampleError,
    SampleNames,
    check_label,
    check_lengths,
    openrlhf_sample,
)
from reward_server.api.bodies import add_body_schemas, body_openapi, validated_body
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


@contextmanager
def _refused_as_422() -> Iterator[None]:
    """A sample that fails a contract check is a 422 naming the trainer's field."""
    try:
        yield
    except SampleError as exc:
        raise ApiError(exc.message, exc.param) from None


SLIME_FIELDS = SampleNames("response", "label", "prompt")


def _item(completion: str, label: Any, prompt: Any, fields: SampleNames) -> RewardItem:
    try:
        return RewardItem(completion=completion, ground_truth=label, prompt=prompt)
    except ValidationError as exc:
        field, message = describe_validation_error(exc.errors()[0])
        raise ApiError(message, fields.param(field)) from None


def _mark_approximate(result: ItemResult, prompt_cut: bool) -> ItemResult:
    """A self-certainty computed on a cut prompt is labelled, never passed off as exact."""
    reason = approximate_reason(
        result.breakdown.self_certainty, result.certainty.source,
        prompt_sent=True, prompt_cut=prompt_cut,
    )
    if reason is None:
        return result
    certainty = result.certainty._replace(
        reason=reason, detail=APPROXIMATE_DETAILS[reason], approximate=True
    )
    return result._replace(certainty=certainty)


def extra_logs(results: list[ItemResult]) -> dict[str, list[float]]:
    """Per-sample logs with the same keys on every response (:mod:`reward_contract.logs`)."""
    return log_columns([
        log_row(r.breakdown, r.breakdown.failure_reason is None, r.breakdown.self_certainty,
                r.certainty.approximate)
        for r in results
    ])


async def openrlhf_reward(request: Request) -> dict[str, Any]:
    """OpenRLHF remote reward (``--reward.remote_url http://HOST:PORT/get_reward``).

    The response text is the query after the prompt (or after the end of a prompt the
    trainer cut from the left), without trailing end-of-turn markers; labels are the
    ground truths (JSON strings).
    """
    ctx = context_of(request)
    deadline = ctx.deadline_from(request.headers)
    body = await validated_body(request, OpenRLHFRequest)
    count = len(body.query)
    prompts = body.prompts if body.prompts is not None else [""] * count
    labels = body.labels if body.labels is not None else [None] * count
    with _refused_as_422():
        check_lengths(count, prompts=len(prompts), labels=len(labels))
    check_count(request, count, "query")
    items, truncated = [], []
    for index, (query, prompt, label) in enumerate(zip(body.query, prompts, labels, strict=True)):
        fields = SampleNames(f"query[{index}]", f"labels[{index}]", f"prompts[{index}]")
        with _refused_as_422():
            sample = openrlhf_sample(query, prompt, label, fields)
        items.append(_item(sample.response, sample.label, sample.prompt, fields))
        truncated.append(sample.prompt_cut)
    await ctx.wait_ready(deadline)
    scored = await ctx.service.score(RewardRequest(items=items), deadline)
    results = [_mark_approximate(r, cut) for r, cut in zip(scored.results, truncated, strict=True)]
    return {
        "rewards": [r.breakdown.reward for r in results],
        "scores": [r.breakdown.score for r in results],
        "extra_logs": extra_logs(results),
    }


async def slime_reward(request: Request) -> dict[str, Any]:
    """slime remote reward (``--rm-type remote_rm --rm-url http://HOST:PORT/slime/reward
    --reward-key reward``): one sample in, a flat dict with ``reward`` and every component;
    ``self_certainty`` is null when not computed (``self_certainty_reason`` says why) and
    ``self_certainty_approximate`` is true when computed without the prompt."""
    ctx = context_of(request)
    deadline = ctx.deadline_from(request.headers)
    body = await validated_body(request, SlimeRequest)
    check_count(request, 1, "response")
    with _refused_as_422():
        check_label(body.label, SLIME_FIELDS.label, SLIME_LABEL_HINT)
    item = _item(strip_end_markers(body.response), body.label, body.prompt, SLIME_FIELDS)
    await ctx.wait_ready(deadline)
    scored = await ctx.service.score(RewardRequest(items=[item]), deadline)
    result = result_dict(scored.results[0])
    failure, certainty = result["format_error"], result["certainty"]
    fields = slime_reward_fields(
        result["reward"], result["score"], result["components"], certainty["reason"],
        certainty["approximate"], failure["reason"] if failure else None,
    )
    return {**fields, "config_hash": scored.config_hash}


def add_trainer_routes(app: FastAPI) -> None:
    """Register the trainer-native routes on ``app``."""
    app.post(
        "/get_reward", response_model=OpenRLHFResponse, responses=ERRORS,
        openapi_extra=body_openapi(OpenRLHFRequest),
    )(openrlhf_reward)
    app.post("/slime/reward", responses=ERRORS, openapi_extra=body_openapi(SlimeRequest))(
        slime_reward
    )
    add_body_schemas(app, [OpenRLHFRequest, SlimeRequest])
