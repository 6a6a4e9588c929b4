"""Completion parsing (REWARD_CONTRACT.md §2): every format-failure reason, strict vs lenient, the
length bound, and the exact rationale span (REWARD_CONTRACT.md §4: the characters inside the
quotes of the rationale's string value)."""

from __future__ import annotations

import json

import pytest

from reward_server.rewards import (
    Action,
    CompletionTypeError,
    FormatFailure,
    ParsedCompletion,
    parse_completion,
)

GOOD_ACTION = '{"type": "click", "name": "buy_now"}'


def ok(text: str, mode: str = "strict", max_chars: int = 32_768) -> ParsedCompletion:
    outcome = parse_completion(text, mode, max_chars)
    assert isinstance(outcome, ParsedCompletion), outcome
    return outcome


def reason(text: str, mode: str = "strict", max_chars: int = 32_768) -> str:
    outcome = parse_completion(text, mode, max_chars)
    assert isinstance(outcome, FormatFailure), outcome
    assert outcome.detail  # human-readable detail always present
    return outcome.reason


FAILURES = [
    # not_json
    ("", "not_json"),
    ("   \n\t ", "not_json"),
    ("I will click buy now.", "not_json"),
    ('{"rationale": "x", "action": {"type": "terminate"}', "not_json"),  # unclosed
    ('{"rationale": "x", "action": {"type": "terminate"},}', "not_json"),  # trailing comma
    ("{'rationale': 'x', 'action': {'type': 'terminate'}}", "not_json"),  # single quotes
    ('{"rationale": "x", "action": {"type": "terminate"}} trailing', "not_json"),
    ('{"rationale": "x", "action": {"type": "terminate"}}{"a": 1}', "not_json"),  # two objects
    ('```json\n{"rationale": "x", "action": {"type": "terminate"}}\n```', "not_json"),
    ('Sure: {"rationale": "x", "action": {"type": "terminate"}}', "not_json"),
    ('{"rationale": NaN, "action": {"type": "terminate"}}', "not_json"),
    ('{"rationale": "x", "action": {"type": "click", "name": Infinity}}', "not_json"),
    ('{"rationale": "x", "action": {"type": "click", "name": -Infinity}}', "not_json"),
    ('{"rationale": "x" "action": {"type": "terminate"}}', "not_json"),  # missing comma
    ('{rationale: "x"}', "not_json"),
    # not_object
    ("[1, 2]", "not_object"),
    ('"a string"', "not_object"),
    ("42", "not_object"),
    ("null", "not_object"),
    ("true", "not_object"),
    ('  [{"rationale": "x", "action": {"type": "terminate"}}]  ', "not_object"),
    # missing keys
    ('{"action": {"type": "terminate"}}', "missing_rationale"),
    ("{}", "missing_rationale"),
    ('{"rationale": "I leave."}', "missing_action"),
    # bad / empty rationale
    ('{"rationale": 1, "action": {"type": "terminate"}}', "bad_rationale"),
    ('{"rationale": null, "action": {"type": "terminate"}}', "bad_rationale"),
    ('{"rationale": ["x"], "action": {"type": "terminate"}}', "bad_rationale"),
    ('{"rationale": "", "action": {"type": "terminate"}}', "empty_rationale"),
    ('{"rationale": "  \\n\\t ", "action": {"type": "terminate"}}', "empty_rationale"),
    # bad action
    ('{"rationale": "x", "action": "terminate"}', "bad_action"),
    ('{"rationale": "x", "action": null}', "bad_action"),
    ('{"rationale": "x", "action": [{"type": "terminate"}]}', "bad_action"),
    ('{"rationale": "x", "action": {}}', "bad_action"),  # no type
    ('{"rationale": "x", "action": {"name": "buy_now"}}', "bad_action"),
    ('{"rationale": "x", "action": {"type": 3}}', "bad_action"),
    ('{"rationale": "x", "action": {"type": "click", "name": 3}}', "bad_action"),
    ('{"rationale": "x", "action": {"type": "click", "name": null}}', "bad_action"),
    (
        '{"rationale": "x", "action": {"type": "type_and_submit", "name": "q", "text": null}}',
        "bad_action",
    ),
    (
        '{"rationale": "x", "action": {"type": "type_and_submit", "name": "q", "text": ["a"]}}',
        "bad_action",
    ),
    # unknown type
    ('{"rationale": "x", "action": {"type": "scroll"}}', "unknown_type"),
    ('{"rationale": "x", "action": {"type": "Click", "name": "buy_now"}}', "unknown_type"),
    ('{"rationale": "x", "action": {"type": ""}}', "unknown_type"),
    # extra keys, top level and in action
    ('{"rationale": "x", "action": {"type": "terminate"}, "answer": 1}', "extra_keys"),
    ('{"rationale": "x", "action": {"type": "terminate", "reason": "done"}}', "extra_keys"),
    ('{"rationale": "x", "action": {"type": "click", "name": "a", "element": "b"}}', "extra_keys"),
    # duplicate keys, top level and in action
    ('{"rationale": "x", "action": {"type": "terminate"}, "rationale": "y"}', "duplicate_keys"),
    (
        '{"rationale": "x", "action": {"type": "terminate"}, "action": {"type": "terminate"}}',
        "duplicate_keys",
    ),
    ('{"rationale": "x", "action": {"type": "click", "name": "a", "name": "b"}}', "duplicate_keys"),
    ('{"rationale": "x", "action": {"type": "click", "type": "terminate"}}', "duplicate_keys"),
]


@pytest.mark.parametrize(("text", "expected"), FAILURES)
def test_strict_failure_reason(text: str, expected: str) -> None:
    """REWARD_CONTRACT.md §2: each malformed completion fails with its machine-readable reason."""
    assert reason(text) == expected


def test_every_reason_is_covered() -> None:
    covered = {expected for _, expected in FAILURES} | {"too_long"}
    assert covered == {
        "not_json",
        "not_object",
        "missing_rationale",
        "missing_action",
        "bad_rationale",
        "empty_rationale",
        "bad_action",
        "unknown_type",
        "extra_keys",
        "duplicate_keys",
        "too_long",
    }


def test_too_long_bound_is_inclusive_of_max() -> None:
    """REWARD_CONTRACT.md §2: longer than the bound -> too_long; exactly the bound is parsed."""
    text = '{"rationale": "I leave.", "action": {"type": "terminate"}}'
    assert isinstance(parse_completion(text, "strict", len(text)), ParsedCompletion)
    assert reason(text, "strict", len(text) - 1) == "too_long"
    assert reason(text, "lenient", len(text) - 1) == "too_long"
    assert reason("x" * 40_000) == "too_long"  # default bound 32,768


def test_too_long_is_checked_before_parsing() -> None:
    """A huge completion is rejected by length without being parsed (no stall)."""
    assert reason("[" * 1_000_000) == "too_long"


def test_non_string_completion_raises_typed_error() -> None:
    for bad in (None, 3, b'{"rationale": "x"}', {"rationale": "x"}, ["x"]):
        with pytest.raises(CompletionTypeError) as info:
            parse_completion(bad)  # type: ignore[arg-type]
        assert info.value.field == "completion"


def test_strict_accepts_surrounding_whitespace_and_any_key_order() -> None:
    text = (
        '\n  {"action": {"text": "usb c", "name": "q", "type": "type_and_submit"},'
        ' "rationale": "I search."}  \n'
    )
    parsed = ok(text)
    assert parsed.action == Action("type_and_submit", "q", "usb c")
    assert parsed.rationale == "I search."


def test_missing_or_empty_name_text_is_not_a_format_failure() -> None:
    """REWARD_CONTRACT.md §2: a missing/empty name or text only forfeits credit."""
    assert ok('{"rationale": "x", "action": {"type": "click"}}').action == Action("click")
    assert ok('{"rationale": "x", "action": {"type": "click", "name": ""}}').action.name == ""
    tas = ok('{"rationale": "x", "action": {"type": "type_and_submit", "name": " "}}').action
    assert tas == Action("type_and_submit", " ", "")
    # A terminate with name/text strings is well-formed (allowed keys, string values).
    assert (
        ok('{"rationale": "x", "action": {"type": "terminate", "name": "a"}}').action.type
        == "terminate"
    )


def test_lenient_accepts_fence_and_prose() -> None:
    body = '{"rationale": "I leave.", "action": {"type": "terminate"}}'
    for text in (
        "```json\n" + body + "\n```",
        "```\n" + body + "\n```",
        "Here is my answer: " + body + " Hope that helps!",
        "Thinking {not json} ... " + body,
    ):
        parsed = ok(text, "lenient")
        assert parsed.rationale == "I leave."
        assert parsed.action == Action("terminate")
        assert text[parsed.rationale_span[0] : parsed.rationale_span[1]] == "I leave."


def test_lenient_ignores_unknown_keys() -> None:
    text = (
        '{"rationale": "I buy.", "confidence": 0.9, '
        '"action": {"type": "click", "name": "buy_now", "element_id": 7}}'
    )
    assert reason(text) == "extra_keys"
    parsed = ok(text, "lenient")
    assert parsed.action == Action("click", "buy_now")


def test_lenient_still_fails_without_an_object_or_with_bad_fields() -> None:
    assert reason("no object here", "lenient") == "not_json"
    assert reason("", "lenient") == "not_json"
    assert reason('{"action": {"type": "terminate"}}', "lenient") == "missing_rationale"
    assert reason('{"rationale": "x", "action": {"type": "fly"}}', "lenient") == "unknown_type"
    assert (
        reason('{"rationale": " ", "action": {"type": "terminate"}}', "lenient")
        == "empty_rationale"
    )
    assert (
        reason('{"rationale": "x", "action": {"type": "click", "name": NaN}}', "lenient")
        == "not_json"
    )


# --- the rationale span ---------------------------------------------------------------


def assert_span(text: str, parsed: ParsedCompletion, raw_inside_quotes: str) -> None:
    start, stop = parsed.rationale_span
    assert text[start:stop] == raw_inside_quotes
    assert text[start - 1] == '"' and text[stop] == '"'
    assert json.loads('"' + text[start:stop] + '"') == parsed.rationale


@pytest.mark.parametrize(
    "raw",
    [
        "I want it.",
        "  leading and trailing whitespace  ",
        '\\"quoted\\" and a backslash \\\\ here',
        "unicode escapes \\u00e9\\u4e2d and a pair \\ud83d\\ude00",
        "literal unicode é 中 😀 and \\n\\t escapes",
        "\\/slash and } brace { and ] [ , : inside",
    ],
)
def test_rationale_span_is_exactly_inside_the_quotes(raw: str) -> None:
    """REWARD_CONTRACT.md §4: the span covers the string value's characters, not key or quotes."""
    for prefix, between in (("", " "), ("  \n ", "  "), ("\t", "")):
        text = (
            f'{prefix}{{"action": {{"type": "terminate"}},{between}"rationale":{between}"{raw}"}}'
        )
        assert_span(text, ok(text), raw)
        text = f'{prefix}{{"rationale":{between}"{raw}", "action": {{"type": "terminate"}}}}'
        assert_span(text, ok(text), raw)


def test_rationale_span_in_lenient_mode_with_prose() -> None:
    raw = '  I \\"love\\" it \\u00e9'
    text = f'Answer:\n```json\n{{"rationale": "{raw}", "action": {{"type": "terminate"}}}}\n```'
    parsed = ok(text, "lenient")
    assert_span(text, parsed, raw)
    assert parsed.rationale == '  I "love" it é'


def test_rationale_span_when_the_key_text_appears_inside_a_value() -> None:
    text = (
        '{"action": {"type": "click", "name": "\\"rationale\\": \\"fake\\""}, '
        '"rationale": "the real one"}'
    )
    parsed = ok(text)
    assert_span(text, parsed, "the real one")
