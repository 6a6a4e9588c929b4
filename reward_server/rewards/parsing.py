"""Completion text -> parsed action, or a format-failure reason (REWARD_CONTRACT.md §2).

Strict mode (default): after stripping surrounding white space the completion is exactly
one JSON object with exactly the keys ``rationale`` and ``action``; ``rationale`` is a
non-blank string; ``action`` is an object with a known ``type``, no keys beyond
``type``/``name``/``text``, and string ``name``/``text`` where present. Duplicate keys,
``NaN``/``Infinity`` literals and trailing text are failures too: each makes "the" value of
a key ambiguous or is not JSON.

Lenient mode also accepts a Markdown fence or prose around the object (the first balanced
top-level object is used) and ignores unknown keys (the last duplicate wins).

The top-level object is walked key by key (the values themselves are decoded by the C
scanner) so the character span of the rationale's string value is known exactly: the
self-certainty reward is computed over the tokens overlapping it.

>>> parse_completion('{"rationale": "I buy it.", "action": {"type": "terminate"}}').action
Action(type='terminate', name='', text='')
>>> parse_completion('[1]').reason
'not_object'
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import orjson

from reward_contract import ACTION_TYPES
from reward_server.rewards.errors import CompletionTypeError, GroundTruthError
from reward_server.rewards.types import Action, FormatFailure, ParsedCompletion, ParsedFields

_JSON_WS = re.compile(r"[ \t\n\r]*")
_TOP_LEVEL_KEYS = frozenset({"rationale", "action"})
_ACTION_KEYS = frozenset({"type", "name", "text"})
# The first characters of JSON values other than objects (NaN/Infinity are not JSON).
_JSON_VALUE_STARTS = frozenset('["-0123456789tfn')
# Lenient mode tries at most this many '{' positions, so hostile text cannot make it quadratic.
_LENIENT_MAX_ATTEMPTS = 64


class _DuplicateKey(ValueError):
    pass


def _reject_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not valid JSON")


def _pairs_strict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _DuplicateKey(f"duplicate key {duplicate!r}")
    return result


_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_pairs_strict)

_RATIONALE_KEY = re.compile(r'"rationale"[ \t\n\r]*:[ \t\n\r]*"')
_LENIENT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scanstring = json.decoder.scanstring


class _Failure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _skip_ws(text: str, index: int) -> int:
    return _JSON_WS.match(text, index).end()  # type: ignore[union-attr]


def _scan_object(
    text: str, start: int, decoder: json.JSONDecoder
) -> tuple[list[tuple[str, Any, int, int]], int]:
    """Walk the object at ``text[start] == '{'``: (key, value, value_start, value_end)
    for each member, and the index just past the closing brace."""
    members: list[tuple[str, Any, int, int]] = []
    index = _skip_ws(text, start + 1)
    if text[index : index + 1] == "}":
        return members, index + 1
    while True:
        if text[index : index + 1] != '"':
            raise ValueError(f"expected a quoted key at character {index}")
        key, index = _scanstring(text, index + 1, True)
        index = _skip_ws(text, index)
        if text[index : index + 1] != ":":
            raise ValueError(f"expected ':' at character {index}")
        value_start = _skip_ws(text, index + 1)
        value, index = decoder.raw_decode(text, value_start)
        members.append((key, value, value_start, index))
        index = _skip_ws(text, index)
        separator = text[index : index + 1]
        if separator == "}":
            return members, index + 1
        if separator != ",":
            raise ValueError(f"expected ',' or '}}' at character {index}")
        index = _skip_ws(text, index + 1)


def _decode_object(
    text: str, start: int, decoder: json.JSONDecoder
) -> tuple[list[tuple[str, Any, int, int]], int]:
    try:
        return _scan_object(text, start, decoder)
    except _DuplicateKey as exc:
        raise _Failure("duplicate_keys", str(exc)) from None
    except RecursionError:
        raise _Failure("not_json", "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, int-conversion limits, NaN literals
        raise _Failure("not_json", str(exc)) from None


def _locate_strict(text: str) -> tuple[list[tuple[str, Any, int, int]], int, int]:
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    if start >= end:
        raise _Failure("not_json", "empty completion")
    if text[start] != "{":
        # Prose or a Markdown fence before the answer: no JSON value starts like that, and
        # the decoder's error is far dearer to build than this answer.
        if text[start] not in _JSON_VALUE_STARTS:
            raise _Failure("not_json", "the completion is not a JSON value")
        try:
            value, stop = _STRICT_DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            raise _Failure("not_json", "the completion is not a JSON value") from None
        if stop == end:
            raise _Failure("not_object", f"top-level JSON value is a {type(value).__name__}")
        raise _Failure("not_json", "the completion is not a single JSON object")
    members, stop = _decode_object(text, start, _STRICT_DECODER)
    if stop != end:
        raise _Failure("not_json", f"extra text after the JSON object at character {stop}")
    return members, start, stop


def _locate_lenient(text: str) -> tuple[list[tuple[str, Any, int, int]], int, int]:
    position = text.find("{")
    first_failure: _Failure | None = None
    for _ in range(_LENIENT_MAX_ATTEMPTS):
        if position < 0:
            break
        try:
            members, stop = _decode_object(text, position, _LENIENT_DECODER)
            return members, position, stop
        except _Failure as failure:
            first_failure = first_failure or failure
        position = text.find("{", position + 1)
    if first_failure is not None:
        raise first_failure
    raise _Failure("not_json", "no JSON object found")


def nonblank(value: str) -> bool:
    """At least one non-white-space character (REWARD_CONTRACT.md §3, "non-empty")."""
    return bool(value) and not value.isspace()


def _check_action(value: Any, strict: bool) -> Action:
    if not isinstance(value, dict):
        raise _Failure("bad_action", f"action must be an object, got {type(value).__name__}")
    if strict and not value.keys() <= _ACTION_KEYS:
        extra = sorted(value.keys() - _ACTION_KEYS)
        raise _Failure("extra_keys", f"unexpected keys in action: {extra}")
    action_type = value.get("type")
    if not isinstance(action_type, str):
        raise _Failure("bad_action", "action.type must be a string")
    if action_type not in ACTION_TYPES:
        raise _Failure("unknown_type", f"unknown action type {action_type[:64]!r}")
    name = value.get("name", "")
    text = value.get("text", "")
    if not isinstance(name, str):
        raise _Failure("bad_action", "action.name must be a string")
    if not isinstance(text, str):
        raise _Failure("bad_action", "action.text must be a string")
    return Action(action_type, name, text)


_tuple_new = tuple.__new__
# See reward_server.rewards.types: built by field name, without a class call's dict.
_new_fields = ParsedFields.__new__


def _no_dropped_members(completion: str, decoded: Any) -> bool:
    """Whether decoding ``completion`` kept every member (no duplicate key anywhere).

    orjson keeps the last of duplicate keys silently, so the decoded value is checked
    against the raw text instead: in valid JSON a raw ``"`` is either a string token's
    delimiter or the escape ``\\"`` of one decoded ``"``, and orjson writes every string
    back the same way. Unless a quote is spelled ``\\u0022``, the text and the value's
    re-encoding therefore hold equally many quotes exactly when no member was dropped (a
    dropped member takes at least its key's two quotes with it).
    """
    if "\\u0022" in completion:
        return False
    try:
        encoded = orjson.dumps(decoded)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: the walker decides
        return False
    return encoded.count(b'"') == completion.count('"')


def _rationale_start(completion: str) -> int | None:
    """Where the top-level rationale's string value starts, in a strict answer whose
    members are all strings, or None when its key is spelled with escapes (the walker
    finds it).

    In such an answer the only place ``"rationale"`` can be followed by ``:`` is the
    top-level key: a quote inside a string is escaped, and the action's keys are
    type/name/text.
    """
    # The usual spellings, ': "' and ':"', found without the regex (a third of the cost of
    # decoding the whole answer); the first "rationale" token may also be a value.
    after = completion.find('"rationale"') + 11
    if after > 10 and completion.startswith(': "', after):
        return after + 3
    if after > 10 and completion.startswith(':"', after):
        return after + 2
    match = _RATIONALE_KEY.search(completion)
    return None if match is None else match.end()


def _rationale_span(completion: str, rationale: str) -> tuple[int, int] | None:
    """The span of the top-level rationale's string value (see :func:`_rationale_start`),
    checked against the decoded ``rationale``."""
    start = _rationale_start(completion)
    if start is None:
        return None
    value, end = _scanstring(completion, start, True)
    return (start, end - 1) if value == rationale else None


def _parse_fast_strict(
    completion: str, with_span: bool = True
) -> ParsedFields | FormatFailure | None:
    """Strict parsing of everything that decodes as a JSON object, in native code.

    None sends the completion to the key-by-key walker, which gives the same outcome for
    everything this decides (same action and span, or same reason and detail) and also
    names the failures this leaves alone: text that is not one JSON object, a duplicate key
    or a quote spelled ``\\u0022`` anywhere, a rationale key spelled with escapes.
    Without ``with_span`` the span is None and never looked for.
    """
    try:
        top = orjson.loads(completion)
    except orjson.JSONDecodeError:
        return None
    if type(top) is not dict:
        return None
    rationale = top.get("rationale")
    action = top.get("action")
    if (
        len(top) == 2
        and type(rationale) is str
        and type(action) is dict
        and rationale
        and not rationale.isspace()
    ):
        action_type = action.get("type")
        name = action.get("name", "")
        text = action.get("text", "")
        if (
            action_type in ACTION_TYPES
            and type(name) is str
            and type(text) is str
            # No keys beyond type/name/text, cheaper than a key-set comparison.
            and len(action) == 1 + ("name" in action) + ("text" in action)
        ):
            # Without a backslash every raw quote delimits one of the answer's strings
            # (three, and two per action member), which is cheaper to check; and the raw
            # characters after the key are the rationale itself, up to the next quote.
            escaped = "\\" in completion
            if escaped:
                if not _no_dropped_members(completion, top):
                    return None
            elif completion.count('"') != 2 * (3 + 2 * len(action)):
                return None
            if not with_span:
                return _new_fields(
                    ParsedFields, rationale=rationale, action_type=action_type, name=name,
                    text=text, rationale_span=None,
                )
            if escaped:
                span = _rationale_span(completion, rationale)
            else:
                start = _rationale_start(completion)
                span = None if start is None else (start, start + len(rationale))
            if span is None:
                return None
            return _new_fields(
                ParsedFields, rationale=rationale, action_type=action_type, name=name,
                text=text, rationale_span=span,
            )
    if not _no_dropped_members(completion, top):
        return None
    try:
        _check_top(top, strict=True)
    except _Failure as failure:
        return FormatFailure(failure.reason, failure.detail)
    return None


def parse_completion(
    completion: str, mode: str = "strict", max_chars: int = 32_768
) -> ParsedCompletion | FormatFailure:
    """Parse one completion; a badly formed one is a :class:`FormatFailure`, never an error.

    Raises :class:`CompletionTypeError` only when ``completion`` is not a string.
    """
    outcome = parse_fields(completion, mode, max_chars)
    if isinstance(outcome, FormatFailure):
        return outcome
    span = outcome.rationale_span
    assert span is not None  # parse_fields looks for it unless told not to
    return ParsedCompletion(
        rationale=outcome.rationale,
        action=Action(type=outcome.action_type, name=outcome.name, text=outcome.text),
        rationale_span=span,
    )


def parse_fields(
    completion: str, mode: str = "strict", max_chars: int = 32_768, with_span: bool = True
) -> ParsedFields | FormatFailure:
    """:func:`parse_completion` with the answer flat, for batch scoring: one tuple per
    answer instead of a ParsedCompletion and its Action.

    ``with_span=False`` is for callers that need only the action: the span is not looked
    for (it may be None) and nothing else changes.
    """
    if not isinstance(completion, str):
        raise CompletionTypeError(
            "completion", f"must be a string, got {type(completion).__name__}"
        )
    if len(completion) > max_chars:
        return FormatFailure("too_long", f"{len(completion)} characters > limit {max_chars}")
    strict = mode != "lenient"
    if strict:
        decided = _parse_fast_strict(completion, with_span)
        if decided is not None:
            return decided
    walked = _parse_walking(completion, strict)
    if isinstance(walked, FormatFailure):
        return walked
    return _new_fields(
        ParsedFields, rationale=walked.rationale, action_type=walked.action.type,
        name=walked.action.name, text=walked.action.text, rationale_span=walked.rationale_span,
    )


def _parse_walking(completion: str, strict: bool) -> ParsedCompletion | FormatFailure:
    """The reference parse: walks the top-level object key by key and names any failure."""
    try:
        members, _, _ = (_locate_strict if strict else _locate_lenient)(completion)
        by_key = {key: (value, start, stop) for key, value, start, stop in members}
        if strict and len(by_key) != len(members):
            raise _Failure("duplicate_keys", "duplicate top-level key")
        rationale, action = _check_top({key: entry[0] for key, entry in by_key.items()}, strict)
    except _Failure as failure:
        return FormatFailure(failure.reason, failure.detail)
    # The value span includes its quotes; the rationale is what lies between them.
    _, rationale_start, rationale_stop = by_key["rationale"]
    return ParsedCompletion(rationale, action, (rationale_start + 1, rationale_stop - 1))


def _check_top(top: dict[str, Any], strict: bool) -> tuple[str, Action]:
    """The rationale and action of a decoded top-level object, or the first failure in the
    order REWARD_CONTRACT.md §2 lists them."""
    if "rationale" not in top:
        raise _Failure("missing_rationale", "no 'rationale' key")
    if "action" not in top:
        raise _Failure("missing_action", "no 'action' key")
    if strict and len(top) != len(_TOP_LEVEL_KEYS):
        extra = sorted(top.keys() - _TOP_LEVEL_KEYS)
        raise _Failure("extra_keys", f"unexpected top-level keys: {extra}")
    rationale = top["rationale"]
    if not isinstance(rationale, str):
        raise _Failure("bad_rationale", "rationale must be a string")
    if not nonblank(rationale):
        raise _Failure("empty_rationale", "rationale is blank")
    return rationale, _check_action(top["action"], strict)


# A shopper's element name or query is tens of characters; these bounds keep the cost of
# a label (its JSON decoding, its share of each similarity) small whatever a client sends.
MAX_GROUND_TRUTH_FIELD_CHARS = 4096
MAX_GROUND_TRUTH_JSON_CHARS = 65_536
# Label strings repeat across a GRPO group: short ones are decoded once and remembered.
_CACHED_GROUND_TRUTH_CHARS = 1024


def parse_ground_truth(value: Any) -> Action:
    """The ground-truth action from an object or its JSON string (REWARD_CONTRACT.md §1).

    Accepted: ``{"type", "name"?, "text"?}`` or a whole answer ``{"rationale"?, "action"}``.
    A click needs a non-blank ``name``; a type_and_submit a non-blank ``name`` and ``text``;
    ``name`` and ``text`` have at most ``MAX_GROUND_TRUTH_FIELD_CHARS`` characters, a JSON
    string at most ``MAX_GROUND_TRUTH_JSON_CHARS`` (checked before it is decoded).
    Raises :class:`GroundTruthError` naming the field otherwise.
    """
    if type(value) is dict:
        usual = _well_formed_truth(value)
        if usual is not None:
            return usual
        action = _ground_truth_from_object(value)
    elif isinstance(value, Action):
        action = value
    elif isinstance(value, str):
        if len(value) > MAX_GROUND_TRUTH_JSON_CHARS:
            raise GroundTruthError(
                "ground_truth",
                f"{len(value)} characters > limit {MAX_GROUND_TRUTH_JSON_CHARS}",
            )
        if len(value) <= _CACHED_GROUND_TRUTH_CHARS:
            return _parse_short_ground_truth_text(value)
        action = _parse_ground_truth_text(value)
    else:
        action = _ground_truth_from_object(value)
    return _check_field_lengths(action)


def _check_field_lengths(action: Action) -> Action:
    for field, value in (("name", action.name), ("text", action.text)):
        if len(value) > MAX_GROUND_TRUTH_FIELD_CHARS:
            raise GroundTruthError(
                f"ground_truth.{field}",
                f"{len(value)} characters > limit {MAX_GROUND_TRUTH_FIELD_CHARS}",
            )
    return action


_TERMINATE = Action("terminate")


def _well_formed_truth(value: dict[str, Any]) -> Action | None:
    """The action of a ground truth in its usual exact shape, with fields within the
    length bounds, else None (the full check then accepts it or names the field): most
    batches carry only these."""
    action_type = value.get("type")
    size = len(value)
    if action_type == "type_and_submit" and size == 3:
        name, text = value.get("name"), value.get("text")
        if (
            type(name) is str
            and type(text) is str
            and name
            and text
            and not name.isspace()
            and not text.isspace()
            and len(name) <= MAX_GROUND_TRUTH_FIELD_CHARS >= len(text)
        ):
            return _tuple_new(Action, ("type_and_submit", name, text))
    elif action_type == "click" and size == 2:
        name = value.get("name")
        if (
            type(name) is str
            and name
            and not name.isspace()
            and len(name) <= MAX_GROUND_TRUTH_FIELD_CHARS
        ):
            return _tuple_new(Action, ("click", name, ""))
    elif action_type == "terminate" and size == 1:
        return _TERMINATE
    return None


def _parse_ground_truth_text(text: str) -> Action:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise GroundTruthError("ground_truth", "a string ground truth must be JSON") from None
    return _ground_truth_from_object(value)


@lru_cache(maxsize=16_384)  # keys of at most 1,024 characters: tens of MB at worst
def _parse_short_ground_truth_text(text: str) -> Action:
    return _check_field_lengths(_parse_ground_truth_text(text))


def _ground_truth_from_object(value: Any) -> Action:
    field = "ground_truth"
    if isinstance(value, dict) and "type" not in value and "action" in value:
        value, field = value["action"], "ground_truth.action"
    if not isinstance(value, dict):
        raise GroundTruthError(field, f"must be an object, got {type(value).__name__}")
    if not value.keys() <= _ACTION_KEYS:
        raise GroundTruthError(field, f"unexpected keys {sorted(value.keys() - _ACTION_KEYS)}")
    action_type = value.get("type")
    if action_type not in ACTION_TYPES:
        raise GroundTruthError(
            f"{field}.type", f"must be one of {list(ACTION_TYPES)}, got {action_type!r:.80}"
        )
    fields: dict[str, str] = {}
    for key in ("name", "text"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            raise GroundTruthError(f"{field}.{key}", f"must be a string, got {type(item).__name__}")
        fields[key] = item or ""
    required = {"click": ("name",), "type_and_submit": ("name", "text")}.get(action_type, ())
    for key in required:
        if not nonblank(fields[key]):
            raise GroundTruthError(f"{field}.{key}", f"required (non-blank) for {action_type}")
    if action_type == "terminate":
        return Action("terminate")
    if action_type == "click":
        return Action("click", fields["name"])
    return Action(action_type, fields["name"], fields["text"])
