"""The native-code path of strict parsing agrees with the reference walker (REWARD_CONTRACT.md §2).

Whatever the fast path decides (an action with its rationale span, or a failure reason
with its detail) must be exactly what the key-by-key walker decides; everything it leaves
alone goes to the walker.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from reward_server.rewards.parsing import (
    _parse_fast_strict,
    _parse_walking,
    parse_completion,
    parse_fields,
)
from reward_server.rewards.types import FormatFailure, ParsedCompletion, ParsedFields

KEYS = st.sampled_from(
    ["rationale", "action", "type", "name", "text", "r\\u0061tionale", "t\\u0079pe", "x", 'q\\"']
)
TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "click", "terminate", "type_and_submit", '"rationale":', '\\"', "{}", "scroll"]
)
SCALARS = st.sampled_from(["1", "-2.5e3", "true", "null", "[]", '["a", "b\\"c"]', "\"\\u0022\""])
WS = st.sampled_from(["", " ", "\n", "\t ", "\u00a0"])


@st.composite
def objects(draw, depth: int = 0) -> str:
    """Raw JSON-ish object text, with duplicate keys, escapes, odd spacing and non-string
    values allowed."""
    members = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(KEYS)
        choice = draw(st.integers(0, 5))
        if depth < 2 and choice <= 1:
            value = draw(objects(depth=depth + 1))
        elif choice == 2:
            value = draw(SCALARS)
        else:
            value = json.dumps(draw(TEXT), ensure_ascii=draw(st.booleans()))
        members.append(f'{draw(WS)}"{key}"{draw(WS)}:{draw(WS)}{value}{draw(WS)}')
    return draw(WS) + "{" + ",".join(members) + "}" + draw(WS)


def well_formed() -> st.SearchStrategy[str]:
    action = st.fixed_dictionaries(
        {"type": st.sampled_from(["click", "type_and_submit", "terminate"])},
        optional={"name": TEXT, "text": TEXT},
    )
    return st.builds(
        lambda r, a, order, ascii_only: json.dumps(
            {"rationale": r, "action": a} if order else {"action": a, "rationale": r},
            ensure_ascii=ascii_only,
        ),
        TEXT.filter(lambda t: t.strip()), action, st.booleans(), st.booleans(),
    )


def flat(outcome: ParsedCompletion | FormatFailure) -> ParsedFields | FormatFailure:
    """The fast path's form of an outcome: (rationale, type, name, text, span)."""
    if isinstance(outcome, FormatFailure):
        return outcome
    return ParsedFields(outcome.rationale, *outcome.action, outcome.rationale_span)


def assert_agrees(completion: str) -> None:
    decided = _parse_fast_strict(completion)
    walked = _parse_walking(completion, strict=True)
    if decided is not None:
        assert decided == flat(walked) and type(decided) is type(flat(walked)), completion
    assert parse_completion(completion) == walked, completion
    assert parse_fields(completion) == flat(walked), completion
    # Without the span, the same outcome with the span possibly left out.
    spanless = parse_fields(completion, with_span=False)
    if isinstance(walked, FormatFailure):
        assert spanless == walked, completion
    else:
        assert spanless[:4] == flat(walked)[:4], completion
        assert spanless[4] in (None, walked.rationale_span), completion
    if isinstance(walked, ParsedCompletion):
        start, stop = walked.rationale_span
        assert json.loads('"' + completion[start:stop] + '"') == walked.rationale


@settings(max_examples=600, deadline=None)
@given(objects())
def test_fast_path_decides_exactly_as_the_walker(completion: str) -> None:
    assert_agrees(completion)


@settings(max_examples=200, deadline=None)
@given(well_formed())
def test_fast_path_takes_well_formed_answers(completion: str) -> None:
    assert_agrees(completion)
    # The one well-formed case left to the walker: the text "\u0022" anywhere (it may
    # spell a quote, which would hide a duplicate key from the quote count).
    taken = type(_parse_fast_strict(completion)) is ParsedFields
    assert taken or "\\u0022" in completion


DUPLICATES = [
    '{"rationale": "a", "rationale": "b", "action": {"type": "terminate"}}',
    '{"rationale": "a", "action": {"type": "click", "type": "terminate"}}',
    # A key spelled with escapes is the same key (the decoder keeps only the last).
    '{"rationale": "a", "action": {"type": "click", "name": "b", "\\u0074ype": "click"}}',
    '{"r\\u0061tionale": "a", "rationale": "b", "action": {"type": "terminate"}}',
    # A duplicate deep inside a member that fails anyway is still a duplicate.
    '{"rationale": "a", "action": {"type": "click"}, "x": {"k": 1, "k": 2}}',
]


def test_duplicate_keys_are_never_decided_by_the_fast_path() -> None:
    for completion in DUPLICATES:
        assert _parse_fast_strict(completion) is None, completion
        assert parse_completion(completion).reason == "duplicate_keys", completion


def test_failures_of_a_decodable_object_are_named_without_the_walker() -> None:
    cases = {
        '{"action": {"type": "terminate"}}': "missing_rationale",
        '{"rationale": "a", "action": {"type": "click"}, "confidence": 0.9}': "extra_keys",
        '{"rationale": "a", "action": {"type": "scroll"}}': "unknown_type",
        '{"rationale": " ", "action": {"type": "terminate"}}': "empty_rationale",
        '{"rationale": "a", "action": {"type": "click", "element_id": 12}}': "extra_keys",
        '{"rationale": "a", "action": "click"}': "bad_action",
    }
    for completion, reason in cases.items():
        decided = _parse_fast_strict(completion)
        assert isinstance(decided, FormatFailure) and decided.reason == reason, completion
        assert decided == _parse_walking(completion, strict=True)


def test_an_escaped_quote_spelled_as_unicode_goes_to_the_walker() -> None:
    completion = '{"rationale": "say \\u0022hi\\u0022", "action": {"type": "terminate"}}'
    assert _parse_fast_strict(completion) is None
    outcome = parse_completion(completion)
    assert isinstance(outcome, ParsedCompletion) and outcome.rationale == 'say "hi"'
