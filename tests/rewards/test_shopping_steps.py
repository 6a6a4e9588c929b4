"""The rules over the real shopping steps of ``data/shopping-steps`` (REWARD_CONTRACT.md §1,
§3, §6): every step is a valid ground truth, an answer repeating it scores as §3 says
(including real element names without a single ROUGE token), and ROUGE-L and its threshold
decision agree with rouge-score on real queries and element names."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise

import pytest
from rouge_score import rouge_scorer

from reward_server.config import RewardConfig
from reward_server.rewards import (
    Action,
    evaluate,
    exact_match,
    parse_completion,
    parse_ground_truth,
    rouge_l_f1,
    rouge_tokens,
    score_completion,
)
from tests.conftest import DATA, shopping_steps

CONFIG = RewardConfig()
SCORER = rouge_scorer.RougeScorer(["rougeL"])
STEP_FILES = sorted(DATA.glob("*.jsonl"))


STEPS = shopping_steps()


def truth_of(step: dict) -> dict:
    """The step as the action object a client sends."""
    kind = step["kind"]
    fields = {"click": ("name",), "type_and_submit": ("name", "text")}.get(kind, ())
    return {"type": kind, **{key: step[key] for key in fields}}


def reference(prediction: str, target: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def counts(reference_sim: float) -> bool:
    """§3's threshold on the reference value, which may sit one ulp under an exact 0.75."""
    return reference_sim >= CONFIG.similarity_threshold - 1e-9


def test_the_data_covers_every_action_type() -> None:
    assert len(STEP_FILES) == 4
    assert Counter(step["kind"] for step in STEPS) == {
        "type_and_submit": 1181,
        "click": 654,
        "terminate": 117,
    }


def test_every_step_echoed_scores_by_the_rules() -> None:
    """A well-formed answer repeating the real step: type credit, presence credit for each
    non-blank field, and each similarity term at full weight exactly when rouge-score finds
    tokens in it (identical text with no token, e.g. an icon glyph, has F1 0)."""
    for step in STEPS:
        truth = truth_of(step)
        gt = parse_ground_truth(truth)
        assert parse_ground_truth(json.dumps(truth)) == gt
        answer = json.dumps({"rationale": "This is the step I take.", "action": truth})
        result = score_completion(answer, gt, CONFIG)
        expected = CONFIG.format_weight + CONFIG.type_weight
        if gt.type == "click":
            expected += CONFIG.click_name_presence + CONFIG.dars * reference(gt.name, gt.name)
        elif gt.type == "type_and_submit":
            expected += CONFIG.type_name_presence + CONFIG.type_text_presence
            expected += CONFIG.name_similarity_weight * reference(gt.name, gt.name)
            expected += CONFIG.dars * reference(gt.text, gt.text)
        assert result.reward == pytest.approx(expected, abs=1e-9), step
        assert exact_match(parse_completion(answer), gt, CONFIG.similarity_threshold), step


def test_a_real_name_without_tokens_earns_presence_but_no_similarity() -> None:
    """Mind2Web's search-icon button is named by a private-use glyph (U+F002): it is
    non-blank, but rouge-score's tokeniser keeps only [a-z0-9], so even the exact name has
    F1 0 (§3) while the exact-match metric, which compares names, counts it (§6)."""
    icon = next(step for step in STEPS if step["kind"] == "click" and step["name"] == "\uf002")
    gt = parse_ground_truth(truth_of(icon))
    assert rouge_tokens(gt.name) == () and reference(gt.name, gt.name) == 0.0
    answer = json.dumps({"rationale": "I press the search icon.", "action": truth_of(icon)})
    result = score_completion(answer, gt, CONFIG)
    assert (result.type, result.attribute, result.value, result.reward) == (0.3, 0.2, 0.0, 1.0)
    assert exact_match(parse_completion(answer), gt, CONFIG.similarity_threshold)


def _real_pairs() -> list[tuple[str, str]]:
    """(prediction, target) pairs of real text: neighbouring queries and element names,
    a WebShop query against the shopper's instruction, and each query with its last word
    dropped (F1 2(n-1)/(2n-1): on either side of 0.75 depending on its length)."""
    pairs = []
    for field in ("name", "text"):
        values = [step[field] for step in STEPS if step.get(field)]
        pairs += list(pairwise(values))
    for step in STEPS:
        if step["kind"] == "type_and_submit":
            pairs.append((step["text"], step.get("context_hint") or ""))
            words = step["text"].split()
            pairs.append((" ".join(words[:-1]), step["text"]))
    return pairs


def test_rouge_l_and_its_threshold_agree_with_rouge_score_on_real_text() -> None:
    pairs = _real_pairs()
    decided = Counter()
    for prediction, target in pairs:
        ours, theirs = rouge_l_f1(prediction, target), reference(prediction, target)
        assert abs(ours - theirs) <= 1e-9, (prediction, target)
        passes = ours >= CONFIG.similarity_threshold
        assert passes == counts(theirs), (prediction, target, ours, theirs)
        decided[passes] += 1
        decided["exact 0.75, reference one ulp under"] += ours == 0.75 and theirs < 0.75
    # Real text lands on both sides of the threshold, many times each, and on it: real
    # queries where the exact F1 is 0.75 and only the exact value earns the credit.
    assert decided[True] > 500 and decided[False] > 500, decided
    assert decided["exact 0.75, reference one ulp under"] >= 10, decided


def test_metrics_over_echoed_real_steps() -> None:
    """§6 over every real step answered exactly: all accuracies and every F1 are 1."""
    pairs = []
    for step in STEPS:
        truth = truth_of(step)
        answer = json.dumps({"rationale": "This is the step I take.", "action": truth})
        pairs.append((parse_completion(answer), Action(**truth)))
    metrics = evaluate(pairs, CONFIG.similarity_threshold)
    assert metrics.count == len(STEPS)
    assert (metrics.exact_accuracy, metrics.type_accuracy, metrics.type_macro_f1) == (1.0,) * 3
    assert {kind: part.count for kind, part in metrics.per_type.items()} == {
        "click": 654,
        "type_and_submit": 1181,
        "terminate": 117,
    }
