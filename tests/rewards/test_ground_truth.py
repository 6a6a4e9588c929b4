"""Ground truths (REWARD_CONTRACT.md §1): an object or its JSON string, an
action or a whole answer {"rationale", "action"}; each bad shape raises GroundTruthError
naming the field."""

from __future__ import annotations

import json

import pytest

from reward_server.rewards import Action, GroundTruthError, RewardInputError, parse_ground_truth

GOOD = [
    ({"type": "terminate"}, Action("terminate")),
    (
        {"type": "click", "name": "refinements.customer_reviews"},
        Action("click", "refinements.customer_reviews"),
    ),
    (
        {"type": "type_and_submit", "name": "search_input", "text": "usb c cable"},
        Action("type_and_submit", "search_input", "usb c cable"),
    ),
    # name/text are dropped where the type has no such field
    ({"type": "terminate", "name": "x", "text": "y"}, Action("terminate")),
    ({"type": "click", "name": "buy_now", "text": "ignored"}, Action("click", "buy_now")),
    ({"type": "terminate", "name": None}, Action("terminate")),
]


@pytest.mark.parametrize(("value", "expected"), GOOD)
def test_object_string_and_whole_answer_forms(value: dict, expected: Action) -> None:
    assert parse_ground_truth(value) == expected
    assert parse_ground_truth(json.dumps(value)) == expected
    whole = {"rationale": "I do it.", "action": value}
    assert parse_ground_truth(whole) == expected
    assert parse_ground_truth(json.dumps(whole)) == expected
    assert parse_ground_truth({"action": value}) == expected
    assert parse_ground_truth(expected) is expected


BAD = [
    # (value, field named by the error)
    ({"type": "scroll"}, "ground_truth.type"),
    ({"type": None}, "ground_truth.type"),
    ({"name": "buy_now"}, "ground_truth.type"),
    ({"type": 1}, "ground_truth.type"),
    ({"type": "click"}, "ground_truth.name"),
    ({"type": "click", "name": ""}, "ground_truth.name"),
    ({"type": "click", "name": "   "}, "ground_truth.name"),
    ({"type": "click", "name": 5}, "ground_truth.name"),
    ({"type": "click", "name": ["buy_now"]}, "ground_truth.name"),
    ({"type": "type_and_submit", "name": "search_input"}, "ground_truth.text"),
    ({"type": "type_and_submit", "name": "search_input", "text": " \t"}, "ground_truth.text"),
    ({"type": "type_and_submit", "name": "search_input", "text": 3}, "ground_truth.text"),
    ({"type": "type_and_submit", "text": "usb c"}, "ground_truth.name"),
    ({"type": "click", "name": "a", "extra": 1}, "ground_truth"),
    (["click", "buy_now"], "ground_truth"),
    (None, "ground_truth"),
    (42, "ground_truth"),
    ("not json at all", "ground_truth"),
    ("", "ground_truth"),
    ('"click"', "ground_truth"),
    ("[1, 2]", "ground_truth"),
    ("[" * 100_000, "ground_truth"),
    ({"rationale": "x", "action": {"type": "fly"}}, "ground_truth.action.type"),
    ({"rationale": "x", "action": {"type": "click"}}, "ground_truth.action.name"),
    ({"rationale": "x", "action": "terminate"}, "ground_truth.action"),
    (
        {"rationale": "x", "action": {"type": "type_and_submit", "name": "q", "text": None}},
        "ground_truth.action.text",
    ),
]


@pytest.mark.parametrize(("value", "field"), BAD)
def test_bad_shape_raises_typed_error_naming_the_field(value: object, field: str) -> None:
    with pytest.raises(GroundTruthError) as info:
        parse_ground_truth(value)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert isinstance(info.value, RewardInputError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("value", "field"), [b for b in BAD if isinstance(b[0], dict)])
def test_bad_shape_as_json_string_names_the_same_field(value: dict, field: str) -> None:
    with pytest.raises(GroundTruthError) as info:
        parse_ground_truth(json.dumps(value))
    assert info.value.field == field


def test_long_json_strings_parse_like_short_ones() -> None:
    """Strings past the cached length (1,024 characters) take the uncached path, with the
    same result and the same errors; past 65,536 characters they are refused undecoded."""
    text = "usb c cable " * 150  # 1,800 characters
    value = {"type": "type_and_submit", "name": "search_input", "text": text}
    long_string = json.dumps(value)
    assert len(long_string) > 1024
    assert parse_ground_truth(long_string) == Action("type_and_submit", "search_input", text)
    with pytest.raises(GroundTruthError) as info:
        parse_ground_truth(json.dumps({**value, "type": "scroll"}))
    assert info.value.field == "ground_truth.type"
    with pytest.raises(GroundTruthError, match="65536"):
        parse_ground_truth(json.dumps({**value, "text": "x" * 70_000}))
