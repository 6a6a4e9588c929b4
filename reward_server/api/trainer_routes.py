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

from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from pydantic import ValidationError

from reward_contract import RULE_COMPONENTS, strip_end_markers
from reward_contract.query import split_query
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

# How each trainer names the dataset column it sends as the label: an unset column
# arrives as "" (OpenRLHF) or null (slime), and only the trainer's flag fixes that.
OPENRLHF_LABEL_HINT = (
    "OpenRLHF sends the dataset column named by --data.label_key (--label_key before "
    "v0.11) as the label: set it to the ground-truth action column"
)
SLIME_LABEL_HINT = (
    "slime sends the dataset column named by --label-key as the label: set it to the "
    "ground-truth action column"
)
PROMPT_TRUNCATED_DETAIL = (
    "computed with the end of the prompt only: the trainer cut the prompt from the left "
    "to fit its length budget"
)


class TrainerFields(NamedTuple):
    """How one sample's fields are named in a trainer's body (``labels[3]``, ``label``)."""

    completion: str
    label: str
    prompt: str

    def param(self, field: str) -> str:
        """The trainer's name of a :class:`RewardItem` field path: ``ground_truth.name``
        becomes ``labels[3].name``, ``prompt[0].content`` becomes ``prompts[3][0].content``."""
        for ours, theirs in (
            ("ground_truth", self.label), ("prompt", self.prompt), ("completion", self.completion)
        ):
            if field == ours or field.startswith((ours + ".", ours + "[")):
                return theirs + field.removeprefix(ours)
        return field


SLIME_FIELDS = TrainerFields("response", "label", "prompt")


def _item(
    completion: str, label: Any, prompt: Any, fields: TrainerFields, label_hint: str
) -> RewardItem:
    if label is None or label == "":
        raise ApiError(f"{fields.label} is empty: {label_hint}", fields.label)
    try:
        return RewardItem(completion=completion, ground_truth=label, prompt=prompt)
    except ValidationError as exc:
        field, message = describe_validation_error(exc.errors()[0])
        raise ApiError(message, fields.param(field)) from None


def _mark_truncated(result: ItemResult) -> ItemResult:
    """A self-certainty computed on a cut prompt is labelled, never passed off as exact."""
    if result.breakdown.self_certainty is None or result.certainty.source != "model":
        return result
    certainty = result.certainty._replace(
        reason="prompt_truncated", detail=PROMPT_TRUNCATED_DETAIL, approximate=True
    )
    return result._replace(certainty=certainty)


def extra_logs(results: list[ItemResult]) -> dict[str, list[float]]:
    """Per-sample logs with the same keys on every response, whatever the batch holds.

    OpenRLHF concatenates the ``extra_logs`` of one-sample responses and splits them per
    experience, so a key missing from one response breaks the step. A self-certainty
    that was not computed is ``0.0`` with ``self_certainty_missing`` = 1: the mean over
    the samples that have one is ``mean(self_certainty) / (1 - mean(self_certainty_missing))``.
    ``self_certainty_approximate`` = 1 marks a value computed without the whole prompt.
    """
    breakdowns = [r.breakdown for r in results]
    logs = {name: [float(getattr(b, name)) for b in breakdowns] for name in RULE_COMPONENTS}
    logs["format_ok"] = [float(b.failure_reason is None) for b in breakdowns]
    values = [b.self_certainty for b in breakdowns]
    logs["self_certainty"] = [0.0 if value is None else float(value) for value in values]
    logs["self_certainty_missing"] = [float(value is None) for value in values]
    logs["self_certainty_approximate"] = [float(r.certainty.approximate) for r in results]
    return logs


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
    for name, values in (("prompts", prompts), ("labels", labels)):
        if len(values) != count:
            raise ApiError(f"{len(values)} {name} for {count} queries", name)
    check_count(request, count, "query")
    items, truncated = [], []
    for index, (query, prompt, label) in enumerate(zip(body.query, prompts, labels, strict=True)):
        split = split_query(query, prompt)
        if split is None:
            raise ApiError(
                "the query holds neither the prompt nor the end of it: cannot tell where "
                "the response starts",
                f"query[{index}]",
            )
        response = strip_end_markers(split.response)
        fields = TrainerFields(f"query[{index}]", f"labels[{index}]", f"prompts[{index}]")
        items.append(_item(response, label, split.prompt or None, fields, OPENRLHF_LABEL_HINT))
        truncated.append(split.truncated)
    await ctx.wait_ready(deadline)
    scored = await ctx.service.score(RewardRequest(items=items), deadline)
    results = [
        _mark_truncated(result) if cut else result
        for result, cut in zip(scored.results, truncated, strict=True)
    ]
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
    item = _item(
        strip_end_markers(body.response), body.label, body.prompt, SLIME_FIELDS, SLIME_LABEL_HINT
    )
    await ctx.wait_ready(deadline)
    scored = await ctx.service.score(RewardRequest(items=[item]), deadline)
    result = result_dict(scored.results[0])
    failure = result["format_error"]
    certainty = result["certainty"]
    return {
        "reward": result["reward"],
        "score": result["score"],
        **result["components"],
        "self_certainty_approximate": certainty["approximate"],
        "self_certainty_reason": certainty["reason"],
        "format_ok": result["format_ok"],
        "format_error": failure["reason"] if failure else None,
        "config_hash": scored.config_hash,
    }


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
