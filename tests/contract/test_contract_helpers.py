"""The contract's shared helpers (``reward_contract``): their own examples, their rules at
the edges, and agreement with the server code that has to say the same thing."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reward_contract
import reward_contract.certainty
import reward_contract.logs
import reward_contract.query
import reward_contract.samples
from reward_contract import COMPONENT_NAMES, RULE_COMPONENTS
from reward_contract.certainty import (
    APPROXIMATE_DETAILS,
    CERTAINTY_KINDS,
    approximate_reason,
    overlapping_positions,
    rationale_char_span,
    rationale_token_mask,
)
from reward_contract.logs import LOG_KEYS, log_columns, log_row, slime_reward_fields
from reward_contract.samples import (
    OPENRLHF_LABEL_HINT,
    SampleError,
    SampleNames,
    check_label,
    check_lengths,
    openrlhf_sample,
)
from reward_server.rewards import parse_completion

MODULES = [
    reward_contract,
    reward_contract.certainty,
    reward_contract.logs,
    reward_contract.query,
    reward_contract.samples,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_hold(module) -> None:
    failed, tried = doctest.testmod(module)
    assert failed == 0 and tried > 0


def test_the_contract_imports_nothing_outside_the_standard_library() -> None:
    code = (
        "import sys, reward_contract, reward_contract.certainty, reward_contract.logs, "
        "reward_contract.query, reward_contract.samples\n"
        "outside = sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'numpy', 'pydantic', 'httpx', 'client', 'reward_server', 'trainer_adapter'})\n"
        "assert not outside, outside\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_certainty_kinds_are_the_vocabulary() -> None:
    assert CERTAINTY_KINDS == ("kl_uniform", "kl_to_uniform")


# -- the approximate decision ------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "source", "sent", "cut", "expected"),
    [
        (1.0, "model", True, False, None),
        (1.0, "model", False, False, "no_prompt"),
        (1.0, "model", True, True, "prompt_truncated"),
        (1.0, "model", False, True, "no_prompt"),
        (None, "model", False, True, None),  # no value: nothing to label
        (1.0, "provided", False, True, None),  # the trainer's own value is passed through
        (1.0, "none", False, False, None),
    ],
)
def test_approximate_reason(value, source, sent, cut, expected) -> None:
    assert approximate_reason(value, source, prompt_sent=sent, prompt_cut=cut) == expected
    if expected is not None:
        assert APPROXIMATE_DETAILS[expected]


# -- rationale span and token mask --------------------------------------------------------
ANSWERS = [
    '{"rationale": "I search", "action": {"type": "terminate"}}',
    '  {\n "action": {"type": "click", "name": "buy"},\t"rationale" :  "a \\"quoted\\" b"}',
    '{"rationale": "caf\\u00e9 \u00fcber \U0001f600", "action": {"type": "terminate"}}',
    '{"action": {"type": "type_and_submit", "name": "q", "text": "\\"rationale\\": \\"x\\""},'
    ' "rationale": "after a decoy"}',
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_span_is_the_one_the_service_scores(answer) -> None:
    parsed = parse_completion(answer)
    assert parsed.rationale_span is not None
    assert rationale_char_span(answer) == parsed.rationale_span
    start, end = parsed.rationale_span
    assert json.loads('"' + answer[start:end] + '"') == parsed.rationale


@settings(max_examples=200, deadline=None)
@given(
    rationale=st.text(min_size=1, max_size=40).filter(lambda t: t.strip()),
    name=st.text(max_size=20).filter(lambda t: t.strip()),
    action_first=st.booleans(),
    ascii_only=st.booleans(),
    space=st.sampled_from(["", " ", "\n  ", "\t"]),
)
def test_span_agrees_with_the_service_parser(rationale, name, action_first, ascii_only, space):
    members = {
        "rationale": rationale,
        "action": {"type": "click", "name": name},
    }
    if action_first:
        members = dict(reversed(list(members.items())))
    answer = space + json.dumps(members, ensure_ascii=ascii_only, separators=(",", ":" + space))
    parsed = parse_completion(answer)
    assert rationale_char_span(answer) == parsed.rationale_span


def test_span_of_what_is_not_an_answer() -> None:
    assert rationale_char_span("not json") is None
    assert rationale_char_span('{"rationale": 3, "action": {}}') is None
    assert rationale_char_span('{"action": {"type": "terminate"}}') is None
    assert rationale_char_span('{"rationale" "x"}') is None
    assert rationale_char_span('{"rationale": "unterminated') is None
    assert rationale_char_span("") is None


def test_token_mask_and_positions_follow_one_overlap_rule() -> None:
    offsets = [(0, 1), (1, 10), (10, 13), (13, 15), (15, 16), (16, 21), (21, 23), (23, 23)]
    span = (15, 21)
    assert rationale_token_mask(offsets, span) == [False] * 4 + [True, True] + [False] * 2
    assert overlapping_positions(offsets, span) == [4, 5]
    # a token straddling an edge counts; a zero-width token or an empty span selects nothing
    assert overlapping_positions(offsets, (14, 16)) == [3, 4]
    assert overlapping_positions([(5, 5), (4, 6)], (3, 7)) == [1]
    assert rationale_token_mask(offsets, (5, 5)) == [False] * len(offsets)
    assert rationale_token_mask(offsets, None) == [False] * len(offsets)


# -- per-sample logs --------------------------------------------------------------------
class Rules:
    def __init__(self, **values: float) -> None:
        self.__dict__.update(values)


def test_log_rows_carry_every_key_and_say_what_is_missing() -> None:
    rules = Rules(format=0.1, type=0.3, attribute=0.2, value=1000.0)
    exact = log_row(rules, True, 2.5, approximate=False)
    cut = log_row(rules, True, 2.5, approximate=True)
    missing = log_row(Rules(format=0.0, type=0.0, attribute=0.0, value=0.0), False, None, True)
    assert list(exact) == list(LOG_KEYS)
    assert set(LOG_KEYS) == {"format_ok", *RULE_COMPONENTS, "self_certainty",
                             "self_certainty_missing", "self_certainty_approximate"}
    assert set(COMPONENT_NAMES) <= set(LOG_KEYS)
    assert exact["value"] == 1000.0 and exact["self_certainty"] == 2.5
    assert (exact["self_certainty_approximate"], cut["self_certainty_approximate"]) == (0.0, 1.0)
    # no value: 0.0 flagged missing, and never approximate
    assert (missing["self_certainty"], missing["self_certainty_missing"]) == (0.0, 1.0)
    assert missing["self_certainty_approximate"] == 0.0 and missing["format_ok"] == 0.0
    columns = log_columns([exact, missing])
    assert columns["self_certainty_missing"] == [0.0, 1.0]
    assert log_columns([]) == {key: [] for key in LOG_KEYS}


def test_slime_fields_keep_null_and_say_why() -> None:
    components = {"format": 0.0, "type": 0.0, "attribute": 0.0, "value": 0.0,
                  "self_certainty": None}
    failed = slime_reward_fields(0.0, 0.0, components, "format_failure", False, "not_json")
    assert failed == {"reward": 0.0, "score": 0.0, **components,
                      "self_certainty_approximate": False,
                      "self_certainty_reason": "format_failure",
                      "format_ok": False, "format_error": "not_json"}
    ok = slime_reward_fields(1.5, 1.0, {**components, "self_certainty": 2.0}, "no_prompt",
                             True, None)
    assert ok["format_ok"] and ok["self_certainty"] == 2.0 and ok["self_certainty_approximate"]


# -- trainer samples ----------------------------------------------------------------------
PROMPT = "<|im_start|>user\nfind a lamp<|im_end|>\n<|im_start|>assistant\n"
NAMES = SampleNames("queries[2]", "labels[2]", "prompts[2]")


def test_openrlhf_sample_reads_whole_and_cut_prompts() -> None:
    whole = openrlhf_sample(PROMPT + '{"a": 1}<|im_end|>\n', PROMPT, "{}", NAMES)
    assert whole == ('{"a": 1}', PROMPT, "{}", False)
    cut = openrlhf_sample(PROMPT[20:] + "{}", PROMPT, "{}", NAMES)
    assert cut.response == "{}" and cut.prompt == PROMPT[20:] and cut.prompt_cut
    no_prompt = openrlhf_sample("{}", "", "{}", NAMES)
    assert no_prompt.prompt is None and not no_prompt.prompt_cut


def test_sample_errors_name_the_trainers_field() -> None:
    with pytest.raises(SampleError, match="cannot tell where the response starts") as caught:
        openrlhf_sample("unrelated text", PROMPT, "{}", NAMES)
    assert caught.value.param == "queries[2]" and "prompts[2]" in caught.value.message
    for empty in ("", None):
        with pytest.raises(SampleError, match=r"--data\.label_key") as caught:
            openrlhf_sample(PROMPT + "{}", PROMPT, empty, NAMES)
        assert caught.value.param == "labels[2]"
    with pytest.raises(ValueError, match="label is empty: hint"):
        check_label(None, "label", "hint")
    check_label({"type": "terminate"}, "label", OPENRLHF_LABEL_HINT)
    with pytest.raises(SampleError) as caught:
        check_lengths(3, prompts=3, labels=2)
    assert caught.value.param == "labels" and caught.value.message == "2 labels for 3 queries"
    check_lengths(0, prompts=0, labels=0)


def test_sample_names_map_item_fields_to_the_trainers() -> None:
    assert NAMES.param("ground_truth") == "labels[2]"
    assert NAMES.param("ground_truth.name") == "labels[2].name"
    assert NAMES.param("prompt[0].content") == "prompts[2][0].content"
    assert NAMES.param("completion") == "queries[2]"
    assert NAMES.param("prompt_ids") == "prompt_ids"  # not a prompt sub-field
    assert NAMES.param("config.dars") == "config.dars"
