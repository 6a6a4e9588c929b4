"""Hostile input: the reward core under hypothesis and hand-made attacks,
the HTTP API under the same attacks as request bodies, and the body limit.

Sizes are CI-sized; ``RELIABILITY_FULL=1`` raises the example counts (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import math
import os
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_server.config import RewardConfig
from reward_server.rewards import (
    FormatFailure,
    GroundTruthError,
    ParsedCompletion,
    parse_completion,
    parse_ground_truth,
    score_completion,
)
from reward_server.rewards.types import Action
from tests.conftest import assert_error

FULL = os.environ.get("RELIABILITY_FULL") == "1"
EXAMPLES = 2_000 if FULL else 200
CONFIG = RewardConfig()
TRUTHS = [Action("terminate"), Action("click", "buy_now"),
          Action("type_and_submit", "search_input", "usb c cable")]
REASONS = {"not_json", "not_object", "duplicate_keys", "missing_rationale", "missing_action",
           "extra_keys", "bad_rationale", "empty_rationale", "bad_action", "unknown_type",
           "too_long"}
HYPO = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_sane(text: str) -> None:
    """Scoring never raises, and the reward is a finite number with a known reason."""
    for truth in TRUTHS:
        breakdown = score_completion(text, truth, CONFIG)
        assert math.isfinite(breakdown.reward) and 0 <= breakdown.score <= 1
        if breakdown.failure is not None:
            assert breakdown.failure.reason in REASONS, breakdown.failure
            assert breakdown.reward == 0.0
        else:
            assert breakdown.reward >= CONFIG.format_weight


# ----------------------------------------------------------------- reward core (hypothesis)
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(st.characters(codec=None), max_size=200) | st.text(surrogates, max_size=5)
scalars = (
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**40), max_value=10**40) | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
actions = st.fixed_dictionaries(
    {"type": st.sampled_from(["click", "type_and_submit", "terminate"]) | any_text},
    optional={"name": any_text | json_values, "text": any_text | json_values},
)


@HYPO
@given(text=any_text)
def test_core_arbitrary_text(text: str) -> None:
    assert_sane(text)


@HYPO
@given(rationale=any_text | json_values, action=actions | json_values, extra=json_values)
def test_core_structured_completions(rationale, action, extra) -> None:
    obj = {"rationale": rationale, "action": action}
    # json.dumps writes NaN/Infinity literals and \udXXX escapes for lone surrogates.
    text = json.dumps(obj)
    assert_sane(text)
    assert_sane(json.dumps({**obj, "extra": extra}))
    assert_sane(text[:-1] + ', "action": ' + json.dumps(extra) + "}")  # duplicate key
    assert_sane("Sure: " + text + " done")


@HYPO
@given(value=json_values)
def test_ground_truth_rejects_cleanly(value) -> None:
    for candidate in (value, json.dumps(value)):
        try:
            truth = parse_ground_truth(candidate)
        except GroundTruthError as exc:
            assert exc.message
        else:
            assert truth.type in ("click", "type_and_submit", "terminate")


def _rationale(action: str) -> str:
    return '{"rationale": "r", "action": ' + action + "}"


@pytest.mark.parametrize(
    ("label", "text", "reason"),
    [
        ("deep array", "[" * 16_000 + "]" * 16_000, "not_json"),
        ("deep object in action", _rationale('{"a":' * 5_000 + "1" + "}" * 5_000),
         None),
        ("huge integer", _rationale('{"type": "click", "name": ' + "9" * 20_000 + "}"), None),
        ("huge float", _rationale('{"type": "click", "name": 1e999999}'), None),
        ("NaN literal", _rationale('{"type": "click", "name": NaN}'), "not_json"),
        ("Infinity literal", '{"rationale": Infinity, "action": {"type": "terminate"}}',
         "not_json"),
        ("duplicate keys", '{"rationale": "a", "rationale": "b", "action": {"type": '
         '"terminate"}}', "duplicate_keys"),
        ("10 MB string", '{"rationale": "' + "x" * 10_000_000 + '", "action": {"type": '
         '"terminate"}}', "too_long"),
        ("lone surrogate escape", _rationale('{"type": "click", "name": "\\ud800"}'), None),
        ("lone surrogate raw", '{"rationale": "\ud800", "action": {"type": "terminate"}}',
         None),
        ("NUL bytes", '{"rationale": "\x00", "action": {"type": "terminate"}}\x00', None),
    ],
)
def test_core_hand_made_attacks(label: str, text: str, reason: str | None) -> None:
    outcome = parse_completion(text, CONFIG.parse_mode, CONFIG.max_completion_chars)
    assert isinstance(outcome, FormatFailure | ParsedCompletion)
    if reason is not None:
        assert isinstance(outcome, FormatFailure) and outcome.reason == reason, outcome
    assert_sane(text[:1_000_000] if len(text) < 10_000_000 else text)


# ----------------------------------------------------------------- the same over HTTP
ITEM = {"completion": json.dumps({"rationale": "ok", "action": {"type": "terminate"}}),
        "ground_truth": {"type": "terminate"}}


def raw_post(
    url: str, body: bytes, path: str = "/v1/rewards", timeout: float = 60
) -> httpx.Response:
    return httpx.post(url + path, content=body, timeout=timeout,
                      headers={"content-type": "application/json"})


HOSTILE_BODIES = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep nesting in ground truth": b'{"items": [{"completion": "x", "ground_truth": '
    + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}]}",
    "huge integer id": b'{"items": [{"id": ' + b"1" * 5_000 + b', "completion": "x", '
    b'"ground_truth": {"type": "terminate"}}]}',
    "huge float id": b'{"items": [{"id": 1e999, "completion": "x", "ground_truth": '
    b'{"type": "terminate"}}]}',
    "NaN self_certainty": b'{"items": [{"completion": "x", "ground_truth": {"type": '
    b'"terminate"}, "self_certainty": NaN}], "self_certainty_source": "provided"}',
    "Infinity override": b'{"items": [], "config": {"dars": Infinity}}',
    "NaN override": b'{"items": [], "config": {"temperature": NaN}}',
    "duplicate keys": b'{"items": [], "items": [{"completion": "x", "ground_truth": '
    b'{"type": "terminate"}}]}',
    "not utf-8": b"\xff\xfe{\x0b",
    "empty": b"",
    "lone surrogate id": b'{"items": [{"id": "\\ud800", "completion": "x", '
    b'"ground_truth": {"type": "terminate"}}]}',
    "lone surrogate ground truth": b'{"items": [{"completion": "x", "ground_truth": '
    b'{"type": "click", "name": "\\udfff"}}]}',
}


@pytest.mark.parametrize("label", sorted(HOSTILE_BODIES))
def test_hostile_bodies_never_500(rules_server, label: str) -> None:
    for path in ("/v1/rewards", "/v1/evaluate", "/get_reward", "/slime/reward"):
        response = raw_post(rules_server.url, HOSTILE_BODIES[label], path)
        assert response.status_code < 500, (path, response.text[:300])
        assert response.status_code in (200, 400, 413, 422), (path, response.status_code)
    assert httpx.get(rules_server.url + "/healthz").status_code == 200


@pytest.mark.parametrize("label", ["deep nesting", "huge integer id"])
def test_unparseable_bodies_get_the_one_error_shape(rules_server, label: str) -> None:
    assert_error(raw_post(rules_server.url, HOSTILE_BODIES[label]), 422, "body")


def test_ten_megabyte_completion_is_a_score(rules_server) -> None:
    item = {**ITEM, "completion": '{"rationale": "' + "x" * 10_000_000 + '", "action": {}}'}
    response = httpx.post(rules_server.url + "/v1/rewards", json={"items": [item]}, timeout=60)
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["reward"] == 0.0 and result["format_error"]["reason"] == "too_long"


LONE_SURROGATE_ACTION = json.dumps(
    {"rationale": "r", "action": {"type": "click", "name": "\ud800"}}
)  # the text '..."name": "\\ud800"...': valid JSON an LLM can emit


def test_lone_surrogate_in_completion_is_a_score_not_a_500(rules_server) -> None:
    item = {"id": 0, "completion": LONE_SURROGATE_ACTION,
            "ground_truth": {"type": "click", "name": "x"}}
    response = httpx.post(rules_server.url + "/v1/rewards", json={"items": [ITEM, item]})
    assert response.status_code == 200, response.text


def test_lone_surrogate_on_trainer_routes_is_a_score(rules_server) -> None:
    """/get_reward and /slime/reward echo no action: the same completion is a score there."""
    label = json.dumps({"type": "click", "name": "x"})
    openrlhf = httpx.post(rules_server.url + "/get_reward", json={
        "query": [LONE_SURROGATE_ACTION], "prompts": [""], "labels": [label]})
    assert openrlhf.status_code == 200, openrlhf.text
    slime = httpx.post(rules_server.url + "/slime/reward", json={
        "prompt": "", "response": LONE_SURROGATE_ACTION, "label": label})
    assert slime.status_code == 200, slime.text


BOMB_ITEMS = 1_000_000 if FULL else 200_000


def test_item_count_bomb_is_refused_at_once(rules_server) -> None:
    """Refused by the list bound while the body is validated: the answer names the limit
    and carries no error per item (validating them all is what took seconds)."""
    body = b'{"items": [' + b",".join([b"{}"] * BOMB_ITEMS) + b"]}"
    response = raw_post(rules_server.url, body)
    assert response.status_code == 413, response.status_code
    error = response.json()["error"]
    assert error["param"] == "items" and "errors" not in error, error
    assert "more" not in error["message"], error


def test_declared_200mb_body_is_refused_without_reading_it(rules_server) -> None:
    """Headers only, 200 MB declared: 413 while the body is never sent, so nothing of it
    can have been read."""
    port = int(rules_server.url.rsplit(":", 1)[1])
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 209715200\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
