"""Every field of the reward core's results, by name (REWARD_CONTRACT.md §5): a field
added to RewardBreakdown or ParsedFields, or one set from the wrong value, fails here,
and every way of scoring an item builds the same breakdown."""

from __future__ import annotations

import json

import pytest

from reward_contract import COMPONENT_NAMES
from reward_server.config import PROFILES
from reward_server.rewards import (
    Action,
    RewardBreakdown,
    compose_batch,
    compose_reward,
    parse_completion,
    parse_fields,
    reward_batch,
    score_batch,
    score_completion,
)

RATIONALE = "I want the reviews first."
NEAR = json.dumps(
    {"rationale": RATIONALE, "action": {"type": "click", "name": "refinements.reviews"}}
)
TRUTH = Action("click", "refinements.customer_reviews")
SPAN = (NEAR.index(RATIONALE), NEAR.index(RATIONALE) + len(RATIONALE))
MALFORMED = '{"rationale": "x", "action": {"type": "terminate"}, "confidence": 0.9}'
PAPER = PROFILES["paper"]


def test_breakdown_fields_are_pinned() -> None:
    assert RewardBreakdown._fields == (
        "reward", "score", "format", "type", "attribute", "value", "self_certainty",
        "rationale", "action_type", "action_name", "action_text", "rationale_span",
        "failure_reason", "failure_detail",
    )
    # Every component the wire reports is a field of its own.
    assert set(COMPONENT_NAMES) <= set(RewardBreakdown._fields)


def test_every_field_of_a_well_formed_item() -> None:
    breakdown = score_completion(NEAR, TRUTH, PAPER, self_certainty=2.0)
    assert breakdown._asdict() == {
        "reward": pytest.approx(801.01),
        "score": pytest.approx(801.0 / 1001.0),
        "format": 0.5,
        "type": 0.3,
        "attribute": 0.2,
        "value": pytest.approx(800.0),
        "self_certainty": 2.0,
        "rationale": RATIONALE,
        "action_type": "click",
        "action_name": "refinements.reviews",
        "action_text": "",
        "rationale_span": SPAN,
        "failure_reason": None,
        "failure_detail": None,
    }
    assert breakdown.format_ok
    assert breakdown.action == Action("click", "refinements.reviews")


def test_every_field_of_a_format_failure() -> None:
    breakdown = score_completion(MALFORMED, TRUTH, PAPER, self_certainty=2.0)
    assert breakdown._asdict() == {
        "reward": 0.0,
        "score": 0.0,
        "format": 0.0,
        "type": 0.0,
        "attribute": 0.0,
        "value": 0.0,
        "self_certainty": None,
        "rationale": None,
        "action_type": None,
        "action_name": None,
        "action_text": None,
        "rationale_span": None,
        "failure_reason": "extra_keys",
        "failure_detail": "unexpected top-level keys: ['confidence']",
    }
    assert not breakdown.format_ok and breakdown.action is None


def test_every_field_of_the_parsed_fields() -> None:
    assert parse_fields(NEAR)._asdict() == {
        "rationale": RATIONALE,
        "action_type": "click",
        "name": "refinements.reviews",
        "text": "",
        "rationale_span": SPAN,
    }
    assert parse_fields(NEAR, with_span=False).rationale_span in (None, SPAN)
    parsed = parse_completion(NEAR)
    assert (parsed.rationale, parsed.action, parsed.rationale_span) == (
        RATIONALE, Action("click", "refinements.reviews"), SPAN
    )
    assert isinstance(parse_fields(MALFORMED), type(parse_completion(MALFORMED)))


@pytest.mark.parametrize("completion", [NEAR, MALFORMED])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_way_of_scoring_builds_the_same_breakdown(completion: str, profile: str) -> None:
    config = PROFILES[profile]
    expected = score_completion(completion, TRUTH, config, 2.0)
    assert score_batch([completion], [TRUTH], config, [2.0]) == [expected]
    assert compose_batch([parse_fields(completion)], [TRUTH], config, [2.0]) == [expected]
    assert compose_batch([parse_completion(completion)], [TRUTH], config, [2.0]) == [expected]
    assert compose_reward(parse_completion(completion), TRUTH, config, 2.0) == expected
    assert reward_batch([completion], [TRUTH], config, [2.0]) == [expected.reward]
    # Flat: plain values and an exact span tuple, no nested result objects.
    assert {type(value) for value in expected} <= {float, str, tuple, type(None)}
