"""Wire models of the HTTP API (pydantic only; no logic beyond field validation).

Requests forbid unknown fields so a typo is a 422 naming it instead of a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    create_model,
)
from pydantic_core import PydanticCustomError

from reward_contract import RULE_COMPONENTS, ActionType, CertaintySource
from reward_server.config import MAX_SELF_CERTAINTY, PROFILES, RewardConfig
from reward_server.rewards.errors import GroundTruthError
from reward_server.rewards.parsing import parse_ground_truth
from reward_server.rewards.types import Action

MAX_ID_CHARS = 256


def _item_id(value: Any) -> str | int:
    """A client's id, echoed back exactly: a string of at most ``MAX_ID_CHARS``
    characters, or an integer that fits in 64 bits (JSON encoders and most clients stop
    there; a larger one can travel as a string). ``true`` is not the id 1."""
    if type(value) is str:
        if len(value) > MAX_ID_CHARS:
            raise PydanticCustomError(
                "item_id", "a string id has at most {limit} characters", {"limit": MAX_ID_CHARS}
            )
        return value
    if type(value) is int:
        if not -(2**63) <= value < 2**64:
            raise PydanticCustomError(
                "item_id", "an integer id must fit in 64 bits; send a larger one as a string"
            )
        return value
    raise PydanticCustomError(
        "item_id", "an id is a string or an integer, not {kind}", {"kind": type(value).__name__}
    )


ItemId = Annotated[str | int, PlainValidator(_item_id, json_schema_input_type=str | int)]
# No tokenizer has ids this large; a bigger one is a client bug, refused at validation.
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Bounds on what a client sends beside the completion, far above any model's context
# (the scorer refuses items over the context before tokenising them): they cap the work
# and memory one item can ask for.
MAX_TOKEN_IDS = 131_072
MAX_PROMPT_CHARS = 1_048_576
MAX_PROMPT_MESSAGES = 1024


def _prompt_length_of(length: int) -> None:
    if length > MAX_PROMPT_CHARS:
        raise ValueError(f"{length} characters > limit {MAX_PROMPT_CHARS}")


def _prompt_length(text: str) -> str:
    # Not Field(max_length=...): a length constraint makes pydantic-core convert the string
    # to UTF-8 first, which refuses a lone surrogate; the scorer reports that per item.
    _prompt_length_of(len(text))
    return text


PromptText = Annotated[str, AfterValidator(_prompt_length)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionModel(_Strict):
    type: ActionType
    name: str | None = None
    text: str | None = None


class ChatMessage(_Strict):
    role: Annotated[str, Field(min_length=1, max_length=64)]
    content: PromptText


def _messages_length(messages: list[ChatMessage]) -> list[ChatMessage]:
    # The prompt limit holds for the conversation as a whole, as for a templated text.
    _prompt_length_of(sum(len(message.content) for message in messages))
    return messages


def _messages_count(value: Any) -> Any:
    # Counted before any message is validated: the limit caps the work, and its error
    # names the limit.
    if isinstance(value, list) and len(value) > MAX_PROMPT_MESSAGES:
        raise ValueError(f"{len(value)} chat messages > limit {MAX_PROMPT_MESSAGES}")
    return value


PromptMessages = Annotated[
    list[ChatMessage],
    Field(max_length=MAX_PROMPT_MESSAGES),
    BeforeValidator(_messages_count),
    AfterValidator(_messages_length),
]


def _prompt_kind(value: Any) -> str:
    # A list is chat messages, anything else is judged as a text: an error then names
    # what was wrong with the kind sent (a 10,000-message list is over the message limit,
    # not "not a valid string"). The tags are type names, which error paths leave out.
    return "list" if isinstance(value, list) else "str"


Prompt = Annotated[
    Annotated[PromptText, Tag("str")] | Annotated[PromptMessages, Tag("list")],
    Discriminator(_prompt_kind),
]


def _overrides_model() -> type[BaseModel]:
    """Every :class:`RewardConfig` field, optional, with the same bounds: a request can
    override any setting and nothing beyond what a config file could set."""
    fields: dict[str, Any] = {}
    for name, info in RewardConfig.model_fields.items():
        bounded = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[name] = (bounded | None, Field(None, description=info.description))
    return create_model("ConfigOverrides", __base__=_Strict, **fields)


ConfigOverrides = _overrides_model()
ConfigOverrides.__doc__ = "Per-request reward settings; each is bounded like RewardConfig's."


def _known_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"unknown reward profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    return name


ProfileName = Annotated[
    str, AfterValidator(_known_profile), Field(json_schema_extra={"enum": sorted(PROFILES)})
]


def overrides_dict(overrides: BaseModel) -> dict[str, Any]:
    """The settings a :data:`ConfigOverrides` actually sets."""
    return overrides.model_dump(exclude_none=True)


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

    prompt: Prompt | None = Field(
        None, description="templated prompt text, or chat messages (the model's template is used)"
    )
    prompt_ids: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_IDS)] | None = None
    completion_ids: Annotated[list[TokenId], Field(max_length=MAX_TOKEN_IDS)] | None = None
    self_certainty: float | None = Field(
        None,
        ge=-MAX_SELF_CERTAINTY,
        le=MAX_SELF_CERTAINTY,
        description="the trainer's own value, used when self_certainty_source='provided'",
    )


# A hard ceiling checked while the list is validated, so an item-count bomb is refused
# early (413) instead of validating millions of items; --max-items (<= this) applies after.
MAX_ITEMS_CEILING = 65_536


class RewardRequest(_Strict):
    items: list[RewardItem] = Field(max_length=MAX_ITEMS_CEILING)
    profile: ProfileName | None = Field(
        None, description="reward profile for this request instead of the server's;"
        " `config` overrides apply on top of it",
    )
    config: ConfigOverrides | None = None  # type: ignore[valid-type]
    self_certainty_source: CertaintySource | None = Field(
        None, description="`model` (served model), `provided` (item.self_certainty) or `none`;"
        " default: `model` when the server has a model, else `none`",
    )


class FormatError(BaseModel):
    reason: str
    detail: str


Components = create_model(
    "Components",
    __doc__="Every part of an item's reward (REWARD_CONTRACT.md §2-4); self_certainty may be"
    " null (see certainty.reason).",
    **{name: (float, ...) for name in RULE_COMPONENTS},
    self_certainty=(float | None, ...),
)


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
    components: Components  # type: ignore[valid-type]
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
    config: ConfigOverrides | None = None  # type: ignore[valid-type]


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


# At most this many invalid fields are listed in one 422 (the message counts the rest).
MAX_LISTED_ERRORS = 1024


class InvalidField(BaseModel):
    """One invalid field of a 422: where (``items[3].ground_truth.name``) and why (the
    client reads it as ``client.FieldError``)."""

    param: str
    message: str


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int
    errors: list[InvalidField] | None = Field(
        None,
        description="422 of an invalid body: every invalid field, one entry each, in body "
        f"order (at most {MAX_LISTED_ERRORS}); the first is `param`",
    )


def describe_validation_errors(
    errors: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[str, str]], int]:
    """``([(param, message), ...], total)`` of pydantic errors: one entry per field (a
    union reports a bad value once per branch; the first branch's message is kept), at most
    ``MAX_LISTED_ERRORS`` entries, and how many distinct fields there were in all."""
    described: dict[str, str] = {}
    for error in errors:
        param, message = describe_validation_error(error)
        described.setdefault(param, message)
    listed = list(described.items())
    return listed[:MAX_LISTED_ERRORS], len(listed)


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_document(
    status: int,
    kind: str,
    message: str,
    param: str | None = None,
    errors: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The one error shape, ``{"error": {"message", "type", "param", "code"}}`` (plus
    ``errors``, every invalid field of a 422 as ``(param, message)``, when given), as the
    JSON-ready mapping every error answer of the service encodes."""
    error: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": status}
    if errors is not None:
        error["errors"] = [{"param": where, "message": why} for where, why in errors]
    return {"error": error}
