"""Evaluation metrics (REWARD_CONTRACT.md §6), with expected values computed by hand."""

from __future__ import annotations

import json

import pytest

from reward_server.rewards import Action, FormatFailure, evaluate, exact_match, parse_completion


def pred(action: dict) -> object:
    return parse_completion(json.dumps({"rationale": "I act.", "action": action}))


CLICK = "click"
TAS = "type_and_submit"
USB = Action(TAS, "search_input", "usb c cable")

# Nine hand-built pairs (comment: type hit?, exact?).
PAIRS = [
    (pred({"type": CLICK, "name": "buy_now"}), Action(CLICK, "buy_now")),  # hit, exact
    (pred({"type": CLICK, "name": " buy_now "}), Action(CLICK, "buy_now")),  # hit, exact (strip)
    (pred({"type": CLICK, "name": "a.c"}), Action(CLICK, "a.b")),  # hit, not exact
    (parse_completion("I click buy now"), Action(CLICK, "x")),  # format failure: FN click
    (pred({"type": TAS, "name": "search_input", "text": "usb c cable"}), USB),  # hit, exact
    (pred({"type": TAS, "name": "search_input", "text": "usb c cables"}), USB),  # sim 2/3: no
    (pred({"type": TAS, "name": "search_box", "text": "usb c cable"}), USB),  # name differs
    (pred({"type": "terminate"}), Action("terminate")),  # hit, exact
    (pred({"type": CLICK, "name": "buy_now"}), Action("terminate")),  # FN terminate, FP click
]


def test_hand_computed_metrics() -> None:
    """support: click 4, t&s 3, terminate 2; type hits 3/3/1; exact 2/1/1.
    F1: click TP3 FP1 FN1 -> 6/8; t&s TP3 -> 1; terminate TP1 FN1 -> 2/3."""
    assert isinstance(PAIRS[3][0], FormatFailure)
    metrics = evaluate(PAIRS)
    assert metrics.count == 9
    assert metrics.format_valid_rate == pytest.approx(8 / 9)
    assert metrics.exact_accuracy == pytest.approx(4 / 9)
    assert metrics.type_accuracy == pytest.approx(7 / 9)
    assert metrics.type_macro_f1 == pytest.approx((6 / 8 + 1.0 + 2 / 3) / 3)
    click, tas, term = (metrics.per_type[k] for k in (CLICK, TAS, "terminate"))
    assert (click.count, tas.count, term.count) == (4, 3, 2)
    assert (click.predicted, tas.predicted, term.predicted) == (4, 3, 1)
    assert click.exact_accuracy == pytest.approx(2 / 4)
    assert click.type_accuracy == pytest.approx(3 / 4)
    assert click.f1 == pytest.approx(6 / 8)
    assert tas.exact_accuracy == pytest.approx(1 / 3)
    assert tas.type_accuracy == pytest.approx(1.0)
    assert tas.f1 == pytest.approx(1.0)
    assert term.exact_accuracy == pytest.approx(1 / 2)
    assert term.type_accuracy == pytest.approx(1 / 2)
    assert term.f1 == pytest.approx(2 / 3)
    as_dict = metrics.as_dict()
    assert as_dict["per_type"][CLICK]["f1"] == pytest.approx(0.75)


def test_format_failure_is_a_wrong_prediction() -> None:
    """§6: a format failure counts against accuracy and as a false negative of its type."""
    truth = Action(CLICK, "buy_now")
    pairs = [
        (pred({"type": CLICK, "name": "buy_now"}), truth),
        (parse_completion('{"rationale": "x"}'), truth),
    ]
    metrics = evaluate(pairs)
    assert metrics.exact_accuracy == 0.5
    assert metrics.type_accuracy == 0.5
    # click: TP 1, FP 0, FN 1 -> F1 2/3; no other type occurs, so macro = 2/3.
    assert metrics.per_type[CLICK].f1 == pytest.approx(2 / 3)
    assert metrics.type_macro_f1 == pytest.approx(2 / 3)
    assert metrics.per_type[CLICK].predicted == 1


def test_all_failures() -> None:
    pairs = [(parse_completion("nope"), Action("terminate"))] * 3
    metrics = evaluate(pairs)
    assert (
        metrics.count,
        metrics.exact_accuracy,
        metrics.type_accuracy,
        metrics.type_macro_f1,
        metrics.format_valid_rate,
    ) == (3, 0.0, 0.0, 0.0, 0.0)


def test_only_occurring_types_enter_the_macro_average() -> None:
    pairs = [(pred({"type": "terminate"}), Action("terminate"))] * 2
    metrics = evaluate(pairs)
    assert metrics.type_macro_f1 == 1.0
    assert metrics.exact_accuracy == 1.0
    assert metrics.per_type[CLICK].count == 0
    assert metrics.per_type[CLICK].exact_accuracy == 0.0


def test_empty_input() -> None:
    metrics = evaluate([])
    assert (
        metrics.count,
        metrics.exact_accuracy,
        metrics.type_accuracy,
        metrics.type_macro_f1,
    ) == (0, 0.0, 0.0, 0.0)


def test_exact_match_rules() -> None:
    """§6: click names equal after stripping (not similarity); t&s names equal and
    sim(text) >= 0.75 (inclusive); terminate by type alone."""
    gt = Action(TAS, "search_input", "geforce gtx 5090 rog")
    at_threshold = pred({"type": TAS, "name": "search_input", "text": "geforce rtx 5090 rog"})
    assert exact_match(at_threshold, gt, 0.75)
    assert not exact_match(at_threshold, gt, 0.76)
    assert exact_match(pred({"type": TAS, "name": " search_input\n", "text": gt.text}), gt, 0.75)
    assert not exact_match(pred({"type": TAS, "name": "Search_input", "text": gt.text}), gt, 0.75)
    click_gt = Action(CLICK, "refinements.customer_reviews")
    # sim 0.8 earns value reward but is not an exact match: names must be equal.
    assert not exact_match(pred({"type": CLICK, "name": "refinements.reviews"}), click_gt, 0.75)
    assert not exact_match(
        pred({"type": CLICK, "name": "Refinements.Customer_Reviews"}), click_gt, 0.75
    )
    assert exact_match(pred({"type": "terminate"}), Action("terminate"), 0.75)
    assert not exact_match(pred({"type": "terminate"}), click_gt, 0.75)
    assert not exact_match(parse_completion("x"), Action("terminate"), 0.75)


def test_threshold_argument_is_used() -> None:
    gt = Action(TAS, "search_input", "usb c cable")
    near = pred({"type": TAS, "name": "search_input", "text": "usb c cables"})  # sim 2/3
    assert evaluate([(near, gt)], threshold=0.75).exact_accuracy == 0.0
    assert evaluate([(near, gt)], threshold=0.6).exact_accuracy == 1.0


def test_exact_match_at_mathematically_exact_threshold() -> None:
    gt = Action(TAS, "search_input", "usb c charging cable braided")
    assert exact_match(pred({"type": TAS, "name": "search_input", "text": "usb c cable"}), gt, 0.75)
