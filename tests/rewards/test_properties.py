"""Property tests: ROUGE-L equals rouge-score on arbitrary
unicode; scoring never raises on arbitrary text or arbitrary JSON, returns finite values
within the bounds REWARD_CONTRACT.md §3/§5 imply, and is deterministic. Plus explicit hostile
inputs."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from reward_server.config import MAX_COMPLETION_CHARS, RewardConfig
from reward_server.rewards import (
    Action,
    FormatFailure,
    ParsedCompletion,
    parse_completion,
    reward_batch,
    rouge_l_f1,
    score_completion,
)
from reward_server.rewards.parsing import MAX_GROUND_TRUTH_FIELD_CHARS

SCORER = rouge_scorer.RougeScorer(["rougeL"])
PAPER = RewardConfig()
LENIENT = RewardConfig(parse_mode="lenient")
BIG = RewardConfig(max_completion_chars=MAX_COMPLETION_CHARS)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EDGE_CHARS = list("İıßẞǅﬁ²①٣0123456789aZz.,;:!?-_'\"/\\ \t\n\r\u00a0\u2028\u200bé中😀Ω")
# Surrogate-free unicode, biased towards characters that stress the tokeniser.
CHARS = st.one_of(st.characters(), st.sampled_from(EDGE_CHARS))
TEXT = st.text(CHARS, max_size=40)
WORDS = st.lists(
    st.sampled_from(["usb", "c", "cable", "gtx", "5090", "rog", "ß", "İ", "a-b", "x.y", "", " "]),
    max_size=10,
).map(" ".join)
SIM_TEXT = st.one_of(TEXT, WORDS)


def reference(prediction: str, target: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


@SETTINGS
@given(SIM_TEXT, SIM_TEXT)
def test_rouge_l_matches_rouge_score(prediction: str, target: str) -> None:
    """REWARD_CONTRACT.md §3: agree with RougeScorer(["rougeL"]) to 1e-9 on any input."""
    got = rouge_l_f1(prediction, target)
    assert abs(got - reference(prediction, target)) <= 1e-9
    assert 0.0 <= got <= 1.0
    assert rouge_l_f1(target, prediction) == pytest.approx(got, abs=1e-12)  # F1 symmetric


@pytest.mark.parametrize(
    ("prediction", "target"),
    [
        ("İstanbul", "istanbul"),
        ("STRASSE", "straße"),
        ("ß", "ss"),
        ("ǅ", "dž"),
        ("a1b2", "a1b2"),
        ("", ""),
        ("!!!", "???"),
        ("x" * 600, "x" * 600),
        ("the the the", "the"),
        ("usb-c cable", "usb c cable"),
        ("١٢٣ 123", "123"),
        ("geforce rtx 5090 rog", "geforce gtx 5090 rog"),
        (" ".join(map(str, range(700))), " ".join(map(str, range(0, 700, 2)))),
    ],
)
def test_rouge_l_explicit_edges(prediction: str, target: str) -> None:
    assert abs(rouge_l_f1(prediction, target) - reference(prediction, target)) <= 1e-9


ACTION_TYPES = ["click", "type_and_submit", "terminate"]
NONBLANK = st.text(CHARS, min_size=1, max_size=30).filter(lambda s: not s.isspace())
GROUND_TRUTH = st.one_of(
    st.just(Action("terminate")),
    st.builds(lambda n: Action("click", n), NONBLANK),
    st.builds(lambda n, t: Action("type_and_submit", n, t), NONBLANK, NONBLANK),
)
CERTAINTY = st.one_of(st.none(), st.floats(0.0, 50.0, allow_nan=False))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.one_of(TEXT, st.sampled_from(["type", "name", "text"])), children, max_size=4
        )
    ),
    max_leaves=15,
)
ACTION_LIKE = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(ACTION_TYPES), JSON_VALUES)},
        optional={
            "name": st.one_of(TEXT, WORDS, JSON_VALUES),
            "text": st.one_of(TEXT, WORDS, JSON_VALUES),
            "extra": JSON_VALUES,
        },
    ),
)


def check_bounds(completion: str, gt: Action, config: RewardConfig, s: float | None) -> None:
    first = score_completion(completion, gt, config, s)
    second = score_completion(completion, gt, config, s)
    assert first == second  # deterministic
    # The rewards-only path gives exactly the breakdown's reward (and takes ground truths
    # in their JSON form too).
    assert reward_batch([completion], [gt], config, [s]) == [first.reward]
    assert reward_batch([completion], [json.dumps(gt._asdict())], config, [s]) == [first.reward]
    values = (first.reward, first.score, first.format, first.type, first.attribute, first.value)
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert 0.0 <= first.score <= 1.0
    upper = config.best_for(gt.type) + (config.alpha * s if s is not None else 0.0)
    assert 0.0 <= first.reward <= upper + 1e-9
    if first.failure is not None:
        assert isinstance(first.failure, FormatFailure)
        assert values == (0.0,) * 6 and first.parsed is None
    else:
        assert first.format == config.format_weight
        assert first.type in (0.0, config.type_weight)
        rules = first.format + first.type + first.attribute + first.value
        assert first.score == pytest.approx(rules / config.best_for(gt.type), abs=1e-12)
        assert first.reward == pytest.approx(rules + (config.alpha * s if s else 0.0), abs=1e-9)


@SETTINGS
@given(st.text(CHARS, max_size=200), GROUND_TRUTH, CERTAINTY, st.sampled_from([PAPER, LENIENT]))
def test_scoring_arbitrary_text_never_raises(
    text: str, gt: Action, s: float | None, config: RewardConfig
) -> None:
    check_bounds(text, gt, config, s)


@SETTINGS
@given(
    JSON_VALUES,
    ACTION_LIKE,
    GROUND_TRUTH,
    CERTAINTY,
    st.sampled_from([PAPER, LENIENT]),
    st.sampled_from(["", "```json\n", "Answer: "]),
)
def test_scoring_arbitrary_json_never_raises(
    rationale: object,
    action: object,
    gt: Action,
    s: float | None,
    config: RewardConfig,
    wrapper: str,
) -> None:
    completion = wrapper + json.dumps(
        {"rationale": rationale, "action": action}, ensure_ascii=False
    )
    check_bounds(completion, gt, config, s)
    outcome = parse_completion(completion, config.parse_mode, config.max_completion_chars)
    if isinstance(outcome, ParsedCompletion):
        assert outcome.rationale == rationale
        start, stop = outcome.rationale_span
        assert json.loads('"' + completion[start:stop] + '"') == rationale


@SETTINGS
@given(NONBLANK, GROUND_TRUTH, st.one_of(TEXT, WORDS), st.one_of(TEXT, WORDS))
# F1 exactly 0.75 with P != R (3 common tokens of 3 and 5), where the reference's
# arithmetic comes out one ulp short of the threshold.
@example("I click.", Action("click", "a b c d e"), "a b c", "")
def test_well_formed_completion_scores_per_spec(
    rationale: str, gt: Action, name: str, text: str
) -> None:
    """A well-formed answer of the ground truth's type earns type credit and the §3 terms."""
    action = {"type": gt.type, "name": name, "text": text}
    completion = json.dumps({"rationale": rationale, "action": action})
    result = score_completion(completion, gt, PAPER)
    assert result.format_ok and result.type == 0.3
    if gt.type == "click":
        sim = reference(name, gt.name)
        # The reference is within 1e-9 of the exact F1; an F1 truly below 0.75 is at
        # least 1 / (4 (m + n)) below it, so this margin only admits an exact 0.75.
        expected_value = 1000.0 * sim if sim >= 0.75 - 1e-9 else 0.0
        assert result.value == pytest.approx(expected_value, abs=1e-9)


HOSTILE = [
    pytest.param("[" * 100_000, id="100k-open-brackets"),
    pytest.param("{" + '"a":{' * 50_000, id="50k-nested-objects"),
    pytest.param(
        '{"rationale": ' + "[" * 100_000 + "]" * 100_000 + ', "action": {"type": "terminate"}}',
        id="deep-rationale",
    ),
    pytest.param("1" + "0" * 100_000, id="huge-int-top-level"),
    pytest.param(
        '{"rationale": 1' + "0" * 100_000 + ', "action": {"type": "terminate"}}',
        id="huge-int-rationale",
    ),
    pytest.param(
        '{"rationale": "x", "action": {"type": "click", "name": "a"}, "n": 1' + "0" * 100_000 + "}",
        id="huge-int-extra",
    ),
    pytest.param('{"rationale": NaN, "action": {"type": "terminate"}}', id="nan"),
    pytest.param(
        '{"rationale": "x", "action": {"type": "terminate"}, "p": Infinity}', id="infinity"
    ),
    pytest.param(
        '{"rationale": "x", "action": {"type": "click", "name": -Infinity}}', id="neg-infinity"
    ),
    pytest.param(
        '{"rationale": "\\ud800", "action": {"type": "click", "name": "\\udfff"}}',
        id="lone-surrogates",
    ),
    pytest.param(
        '{"rationale": "x", "action": {"type": "type_and_submit", "name": "\\ud800q",'
        ' "text": "\\udc00 usb c cable"}}',
        id="lone-surrogates-tas",
    ),
    pytest.param(
        '{"rationale": "' + "I want it. " * 100_000 + '", "action": {"type": "terminate"}}',
        id="1MB-rationale",
    ),
    pytest.param(
        '{"rationale": "x", "action": {"type": "type_and_submit", "name": "q", '
        '"text": "' + "usb c cable " * 90_000 + '"}}',
        id="1MB-text",
    ),
    pytest.param(
        '{"rationale": "x", "action": {"type": "click", "name": "' + "a" * 1_000_000 + '"}}',
        id="1MB-single-token",
    ),
    pytest.param(
        '{"rationale": "' + "\\u00e9" * 200_000 + '", "action": {"type": "terminate"}}',
        id="1MB-escapes",
    ),
    pytest.param(
        '{"rationale": "a", "rationale": "b", "action": {"type": "terminate"}}',
        id="duplicate-rationale",
    ),
    pytest.param(
        '{"rationale": "a", "action": {"type": "click", "type": "terminate"}}', id="duplicate-type"
    ),
    pytest.param("\x00\x01\x02{}\ufeff", id="control-chars"),
    pytest.param("\ufeff" + '{"rationale": "x", "action": {"type": "terminate"}}', id="bom"),
    pytest.param(
        '{"rationale": "x", "action": {"type": "terminate"}}' + "}" * 100_000, id="trailing-braces"
    ),
    pytest.param("{" * 100_000, id="100k-open-braces"),
    pytest.param("".join(chr(c) for c in range(0x20, 0x3000)), id="unicode-sweep"),
]
GTS = [Action("terminate"), Action("click", "a"), Action("type_and_submit", "q", "usb c cable")]


@pytest.mark.parametrize("completion", HOSTILE)
@pytest.mark.parametrize(
    "config",
    [PAPER, BIG, BIG.with_overrides({"parse_mode": "lenient"})],
    ids=["paper", "big", "big-lenient"],
)
def test_hostile_inputs_never_raise(completion: str, config: RewardConfig) -> None:
    for gt in GTS:
        check_bounds(completion, gt, config, 1.0)
    if len(completion) > config.max_completion_chars:
        outcome = parse_completion(completion, config.parse_mode, config.max_completion_chars)
        assert isinstance(outcome, FormatFailure) and outcome.reason == "too_long"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("[" * 100_000, "not_json"),
        ("{" * 100_000, "not_json"),
        ('{"rationale": NaN, "action": {"type": "terminate"}}', "not_json"),
        ('{"rationale": "a", "rationale": "b", "action": {"type": "terminate"}}', "duplicate_keys"),
        ('{"rationale": "a", "action": {"type": "click", "type": "terminate"}}', "duplicate_keys"),
        ("\ufeff" + '{"rationale": "x", "action": {"type": "terminate"}}', "not_json"),
    ],
)
def test_hostile_failure_reasons(completion: str, expected: str) -> None:
    outcome = parse_completion(completion, "strict", 10_000_000)
    assert isinstance(outcome, FormatFailure)
    assert outcome.reason == expected


def test_huge_integer_is_a_format_failure() -> None:
    """A 10^5-digit integer (past Python's int-conversion limit) fails the format cleanly."""
    for completion in (
        "1" + "0" * 100_000,
        '{"rationale": 1' + "0" * 100_000 + ', "action": {"type": "terminate"}}',
    ):
        outcome = parse_completion(completion, "strict", 10_000_000)
        assert isinstance(outcome, FormatFailure)
        assert outcome.reason in {"not_json", "not_object", "bad_rationale"}


def test_values_at_the_limits_score_correctly() -> None:
    """A completion of almost MAX_COMPLETION_CHARS and a ground truth at its field limit."""
    longest_truth = ("usb c cable " * 400)[:MAX_GROUND_TRUTH_FIELD_CHARS]
    exact = json.dumps(
        {"rationale": "I search.",
         "action": {"type": "type_and_submit", "name": "q", "text": longest_truth}}
    )
    gt = Action("type_and_submit", "q", longest_truth)
    assert score_completion(exact, gt, BIG).reward == pytest.approx(1001.1, abs=1e-9)
    text = "usb c cable " * 87_000
    completion = json.dumps(
        {"rationale": "I search.", "action": {"type": "type_and_submit", "name": "q", "text": text}}
    )
    assert MAX_COMPLETION_CHARS - 10_000 < len(completion) <= MAX_COMPLETION_CHARS
    far = score_completion(completion, Action("type_and_submit", "q", "usb c cable"), BIG)
    assert far.value == pytest.approx(0.1, abs=1e-12)  # sim tiny -> below threshold


def test_lone_surrogate_rationale_is_a_string() -> None:
    outcome = parse_completion('{"rationale": "\\ud800", "action": {"type": "terminate"}}')
    assert isinstance(outcome, ParsedCompletion)
    assert outcome.rationale == "\ud800"
