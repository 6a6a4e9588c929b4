"""Hierarchical action reward (REWARD_CONTRACT.md §3): type gating, presence vs blank, thresholded
similarity (>= not >), DARS."""

from __future__ import annotations

import pytest

from reward_server.config import RewardConfig
from reward_server.rewards import Action, ActionReward, action_reward, rouge_l_f1

CONFIG = RewardConfig()
CLICK_GT = Action("click", "refinements.customer_reviews")
TAS_GT = Action("type_and_submit", "search_input", "geforce gtx 5090 rog")
TERM_GT = Action("terminate")


def parts(pred: Action, gt: Action, config: RewardConfig = CONFIG) -> tuple[float, ...]:
    result = action_reward(pred, gt, config)
    assert isinstance(result, ActionReward)
    return (result.type, result.attribute, result.value)


@pytest.mark.parametrize(
    ("pred", "gt"),
    [
        (Action("terminate"), CLICK_GT),
        (Action("type_and_submit", "refinements.customer_reviews", "x"), CLICK_GT),
        (Action("click", "search_input"), TAS_GT),
        (Action("terminate"), TAS_GT),
        (Action("click", "terminate"), TERM_GT),
        (Action("type_and_submit", "search_input", "geforce gtx 5090 rog"), TERM_GT),
    ],
)
def test_type_gating_wrong_type_earns_nothing(pred: Action, gt: Action) -> None:
    """§3: all credit requires pred.type == gt.type, even when names/texts match."""
    assert parts(pred, gt) == (0.0, 0.0, 0.0)


def test_type_gating_even_with_identical_name() -> None:
    pred = Action("type_and_submit", CLICK_GT.name, CLICK_GT.name)
    assert parts(pred, CLICK_GT) == (0.0, 0.0, 0.0)


def test_terminate_gets_type_only() -> None:
    assert parts(Action("terminate"), TERM_GT) == (0.3, 0.0, 0.0)
    # Stray name/text on a terminate earns nothing extra.
    assert parts(Action("terminate", "buy_now", "x"), TERM_GT) == (0.3, 0.0, 0.0)


def test_threshold_is_greater_or_equal() -> None:
    """§3: a term counts when sim >= 0.75 (0.75 exactly counts)."""
    pred = Action("type_and_submit", "search_input", "geforce rtx 5090 rog")
    assert rouge_l_f1(pred.text, TAS_GT.text) == 0.75
    assert parts(pred, TAS_GT) == pytest.approx((0.3, 0.2, 0.1 + 750.0), abs=1e-9)
    # The same input one hair above the threshold earns no text credit.
    strict = CONFIG.with_overrides({"similarity_threshold": 0.7500001})
    assert parts(pred, TAS_GT, strict) == pytest.approx((0.3, 0.2, 0.1), abs=1e-9)
    # Click name at exactly the threshold counts too.
    click_gt = Action("click", "a b c d")
    assert parts(Action("click", "a b x d"), click_gt) == pytest.approx((0.3, 0.2, 750.0))


def test_below_threshold_is_zero_not_partial() -> None:
    # sim("usb c cables", "usb c cable") = 2/3 < 0.75
    gt = Action("type_and_submit", "search_input", "usb c cable")
    pred = Action("type_and_submit", "search_input", "usb c cables")
    assert rouge_l_f1(pred.text, gt.text) == pytest.approx(2 / 3)
    assert parts(pred, gt) == pytest.approx((0.3, 0.2, 0.1), abs=1e-12)


def test_threshold_applies_to_the_name_term_too() -> None:
    """§3: the threshold applies to every similarity term, including 0.1*sim(name)."""
    gt = Action("type_and_submit", "search box main", "usb c cable")
    near = Action("type_and_submit", "search box", "usb c cable")  # sim 0.8
    far = Action("type_and_submit", "search", "usb c cable")  # sim 0.5
    assert parts(near, gt) == pytest.approx((0.3, 0.2, 0.1 * 0.8 + 1000.0), abs=1e-9)
    assert parts(far, gt) == pytest.approx((0.3, 0.2, 1000.0), abs=1e-9)


def test_click_presence_vs_blank() -> None:
    """§3: +0.2 if pred.name has a non-white-space character."""
    assert parts(Action("click", ""), CLICK_GT) == (0.3, 0.0, 0.0)
    assert parts(Action("click", " \t\n"), CLICK_GT) == (0.3, 0.0, 0.0)
    assert parts(Action("click", "x"), CLICK_GT) == (0.3, 0.2, 0.0)
    # Punctuation is present (non-blank) but has no rouge tokens.
    assert parts(Action("click", "..."), CLICK_GT) == (0.3, 0.2, 0.0)
    # Surrounding white space and case do not change the similarity.
    assert parts(Action("click", "  Refinements.Customer_Reviews "), CLICK_GT) == pytest.approx(
        (0.3, 0.2, 1000.0)
    )


def test_type_and_submit_presence_vs_blank() -> None:
    gt = Action("type_and_submit", "search_input", "usb c cable")
    assert parts(Action("type_and_submit", "", ""), gt) == (0.3, 0.0, 0.0)
    assert parts(Action("type_and_submit", "  ", "\n"), gt) == (0.3, 0.0, 0.0)
    assert parts(Action("type_and_submit", "search_input", ""), gt) == pytest.approx(
        (0.3, 0.1, 0.1)
    )
    assert parts(Action("type_and_submit", "", "usb c cable"), gt) == pytest.approx(
        (0.3, 0.1, 1000.0)
    )
    assert parts(Action("type_and_submit", "other", "tv"), gt) == pytest.approx((0.3, 0.2, 0.0))
    assert parts(gt, gt) == pytest.approx((0.3, 0.2, 1000.1))


def test_dars_scales_only_the_long_text_terms() -> None:
    """§3: value = DARS * sim(text) (+ 0.1 * sim(name)); name weight is not scaled."""
    gt = Action("type_and_submit", "search_input", "usb c cable")
    for dars in (0.0, 1.0, 10.0, 1000.0, 12345.5):
        config = CONFIG.with_overrides({"dars": dars})
        assert parts(gt, gt, config) == pytest.approx((0.3, 0.2, 0.1 + dars), abs=1e-9)
        assert parts(CLICK_GT, CLICK_GT, config) == pytest.approx((0.3, 0.2, dars), abs=1e-9)
        assert parts(TERM_GT, TERM_GT, config) == (0.3, 0.0, 0.0)
        assert config.best_for("click") == pytest.approx(1.0 + dars)
        assert config.best_for("type_and_submit") == pytest.approx(1.1 + dars)
        assert config.best_for("terminate") == pytest.approx(0.8)


def test_dars_makes_long_text_worth_more_than_terminate() -> None:
    """§3 rationale of DARS: a half-right search beats giving up."""
    gt = Action("type_and_submit", "search_input", "geforce gtx 5090 rog")
    partial = parts(Action("type_and_submit", "search_input", "geforce rtx 5090 rog"), gt)
    assert sum(partial) > CONFIG.best_for("terminate")


def test_weights_come_from_config() -> None:
    config = RewardConfig(
        type_weight=1.0,
        click_name_presence=2.0,
        type_name_presence=3.0,
        type_text_presence=4.0,
        name_similarity_weight=5.0,
        dars=6.0,
    )
    assert parts(CLICK_GT, CLICK_GT, config) == pytest.approx((1.0, 2.0, 6.0))
    gt = Action("type_and_submit", "q", "usb")
    assert parts(gt, gt, config) == pytest.approx((1.0, 7.0, 11.0))


def test_mathematically_exact_threshold_counts_for_click() -> None:
    """§3: click add_to_cart vs add_to_cart.buy_now: tokens 3 vs 5, LCS 3, F1 = 6/8 = 0.75."""
    gt = Action("click", "add_to_cart.buy_now")
    assert parts(Action("click", "add_to_cart"), gt) == pytest.approx((0.3, 0.2, 750.0), abs=1e-6)


def test_mathematically_exact_threshold_counts_for_text() -> None:
    """§3: 'usb c cable' vs 'usb c charging cable braided': F1 = 2*3/(3+5) = 0.75."""
    gt = Action("type_and_submit", "search_input", "usb c charging cable braided")
    pred = Action("type_and_submit", "search_input", "usb c cable")
    assert parts(pred, gt) == pytest.approx((0.3, 0.2, 0.1 + 750.0), abs=1e-6)


def test_exact_threshold_similarity_still_matches_rouge_score() -> None:
    """The similarity itself agrees with rouge-score (to 1e-9); only the cut-off is off."""
    from rouge_score import rouge_scorer

    reference = rouge_scorer.RougeScorer(["rougeL"]).score("add_to_cart.buy_now", "add_to_cart")
    assert rouge_l_f1("add_to_cart", "add_to_cart.buy_now") == pytest.approx(0.75, abs=1e-9)
    assert (
        abs(rouge_l_f1("add_to_cart", "add_to_cart.buy_now") - reference["rougeL"].fmeasure) <= 1e-9
    )
