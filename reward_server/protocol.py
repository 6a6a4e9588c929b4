"""Wire models of the HTTP API (pydantic only; no logic beyond field validation).

Requests forbid unknown fields so a typo is a 422 naming it instead of a silent default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator
from pydantic_core import PydanticCustomError

from reward_contract import ActionType, CertaintyKind, CertaintySource
from reward_server.config import ParseMode
from reward_server.rewards.errors import GroundTruthError
from reward_server.rewards.parsing import parse_ground_truth
from reward_server.rewards.types import Action

ItemId = Annotated[str, Field(max_length=256)] | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionModel(_Strict):
    type: ActionType
    name: str | None = None
    text: str | None = None


class ChatMessage(_Strict):
    role: Annotated[str, Field(min_length=1, max_length=64)]
    content: str


class ConfigOverrides(_Strict):
    """Per-request reward settings; each is bounded like :class:`RewardConfig`."""

    format_weight: Annotated[float, Field(ge=0, le=1e6)] | None = None
    type_weight: Annotated[float, Field(ge=0, le=1e6)] | None = None
    click_name_presence: Annotated[float, Field(ge=0, le=1e6)] | None = None
    type_name_presence: Annotated[float, Field(ge=0, le=1e6)] | None = None
    type_text_presence: Annotated[float, Field(ge=0, le=1e6)] | None = None
    name_similarity_weight: Annotated[float, Field(ge=0, le=1e6)] | None = None
    dars: Annotated[float, Field(ge=0, le=1e6)] | None = None
    similarity_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    alpha: Annotated[float, Field(ge=0, le=1e6)] | None = None
    certainty_kind: CertaintyKind | None = None
    temperature: Annotated[float, Field(gt=0, le=100)] | None = None
    parse_mode: ParseMode | None = None
    max_completion_chars: Annotated[int, Field(gt=0, le=10_000_000)] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _ground_truth(value: Any) -> Action:
    try:
        return parse_ground_truth(value)
    except GroundTruthError as exc:
        # ``exc.field`` is the path inside the ground truth ("ground_truth.name").
        raise PydanticCustomError(
            "ground_truth", "{message}", {"message": exc.message, "field": exc.field}
        ) from None


# Validated straight into an Action (one plain function call per item: a model-level
# validator plus a private attribute cost more than the rest of an item's validation).
GroundTruth = Annotated[
    Action, PlainValidator(_ground_truth, json_schema_input_type=dict[str, Any] | str)
]


class _LabelledCompletion(_Strict):
    id: ItemId | None = None
    completion: str
    ground_truth: GroundTruth = Field(
        description="the shopper's real action: an object like `action`, or that as a JSON string"
    )


class RewardItem(_LabelledCompletion):
    """One completion and its ground truth (REWARD_CONTRACT.md §1)."""

    prompt: str | list[ChatMessage] | None = Field(
        None, description="templated prompt text, or chat messages (the model's template is used)"
    )
    prompt_ids: list[Annotated[int, Field(ge=0)]] | None = None
    completion_ids: list[Annotated[int, Field(ge=0)]] | None = None
    self_certainty: float | None = Field(
        None, description="the trainer's own value, used when self_certainty_source='provided'"
    )

    @field_validator("self_certainty")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


# A hard ceiling checked while the list is validated, so an item-count bomb is refused
# early (413) instead of validating millions of items; --max-items (<= this) applies after.
MAX_ITEMS_CEILING = 65_536


class RewardRequest(_Strict):
    items: list[RewardItem] = Field(max_length=MAX_ITEMS_CEILING)
    config: ConfigOverrides | None = None
    self_certainty_source: CertaintySource | None = Field(
        None, description="`model` (served model), `provided` (item.self_certainty) or `none`;"
        " default: `model` when the server has a model, else `none`",
    )


class FormatError(BaseModel):
    reason: str
    detail: str


class Components(BaseModel):
    format: float
    type: float
    attribute: float
    value: float
    self_certainty: float | None


class CertaintyInfo(BaseModel):
    """Where the self-certainty came from. ``reason`` says why it is null, or why it is
    ``approximate`` (``no_prompt``: computed without the prompt)."""

    source: CertaintySource
    reason: str | None = None
    detail: str | None = None
    approximate: bool = False
    rationale_tokens: int | None = None


class RewardResult(BaseModel):
    index: int
    id: ItemId | None = None
    reward: float
    score: float
    components: Components
    format_ok: bool
    format_error: FormatError | None = None
    action: ActionModel | None = None
    certainty: CertaintyInfo


class Timings(BaseModel):
    total_seconds: float
    rules_seconds: float
    queue_seconds: float = 0.0
    forward_seconds: float = 0.0


class RewardResponse(BaseModel):
    results: list[RewardResult]
    config_hash: str
    model: str | None = None
    timings: Timings


class EvaluateItem(_LabelledCompletion):
    """A completion and its ground truth, for the section-6 metrics."""


class EvaluateRequest(_Strict):
    items: list[EvaluateItem] = Field(max_length=MAX_ITEMS_CEILING)
    config: ConfigOverrides | None = None


class OpenRLHFRequest(BaseModel):
    """What OpenRLHF's remote reward client POSTs (extra fields tolerated: trainer-owned)."""

    query: list[str] = Field(max_length=MAX_ITEMS_CEILING)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


class SlimeRequest(BaseModel):
    """What slime's `remote_rm` POSTs per sample."""

    prompt: str | list[dict[str, Any]] | None = None
    response: str
    label: Any = None


# pydantic puts the failing member of a union into the location ("str",
# "dict[str,any]", "constrained-str"); none of them is a field name of ours.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "null"})


def _is_union_tag(part: str) -> bool:
    return not part.isidentifier() or part in _TYPE_TAGS


def describe_validation_error(error: Mapping[str, Any]) -> tuple[str, str]:
    """``(param, message)`` of one pydantic error: the dotted location with item indices
    (``items[3].ground_truth.name``) and a message without pydantic's prefixes."""
    param = ""
    for part in error.get("loc", ()):
        if part == "body" or (isinstance(part, str) and _is_union_tag(part)):
            continue
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    message = str(error.get("msg", "invalid value"))
    context = error.get("ctx") or {}
    if error.get("type") == "ground_truth":
        # The location ends at the ground truth; the field inside it is ours.
        inner = str(context.get("field", "ground_truth")).removeprefix("ground_truth")
        param += inner
        message = str(context.get("message", message))
    return param or "body", message.removeprefix("Value error, ")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody
