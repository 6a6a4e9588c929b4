"""Every worked example of REWARD_CONTRACT.md §7 (paper profile, no self-certainty): exact reward
and parts (format/type/attribute/value), plus the derived score of §5."""

from __future__ import annotations

import json

import pytest

from reward_server.config import RewardConfig
from reward_server.rewards import parse_ground_truth, reward_batch, score_completion

CONFIG = RewardConfig()
RATIONALE = "I want a graphics card, so I search for the one I have in mind."


def C(rationale: str, action: dict) -> str:  # the contract's name for it
    return json.dumps({"rationale": rationale, "action": action})


def click(name: str) -> dict:
    return {"type": "click", "name": name}


def tas(name: str, text: str) -> dict:
    return {"type": "type_and_submit", "name": name, "text": text}


TERMINATE = {"type": "terminate"}

# (completion action, ground truth, reward, (format, type, attribute, value))
WORKED = [
    pytest.param(
        click("refinements.customer_reviews"),
        click("refinements.customer_reviews"),
        1001.0,
        (0.5, 0.3, 0.2, 1000.0),
        id="click-exact",
    ),
    pytest.param(
        click("add_to_cart.buy_now"),
        click("refinements.customer_reviews"),
        1.0,
        (0.5, 0.3, 0.2, 0.0),
        id="click-wrong-name",
    ),
    pytest.param(
        click("refinements.reviews"),
        click("refinements.customer_reviews"),
        801.0,
        (0.5, 0.3, 0.2, 800.0),
        id="click-sim-0.8",
    ),
    pytest.param(
        tas("search_input", "geforce rtx 5090 rog"),
        tas("search_input", "geforce gtx 5090 rog"),
        751.1,
        (0.5, 0.3, 0.2, 750.1),
        id="tas-sim-0.75-at-threshold",
    ),
    pytest.param(
        tas("search_input", "gaming laptop"),
        tas("search_input", "geforce gtx 5090 rog"),
        1.1,
        (0.5, 0.3, 0.2, 0.1),
        id="tas-text-miss",
    ),
    pytest.param(
        tas("search_input", ""),
        tas("search_input", "usb c cable"),
        1.0,
        (0.5, 0.3, 0.1, 0.1),
        id="tas-empty-text",
    ),
    pytest.param(TERMINATE, TERMINATE, 0.8, (0.5, 0.3, 0.0, 0.0), id="terminate-exact"),
    pytest.param(TERMINATE, click("buy_now"), 0.5, (0.5, 0.0, 0.0, 0.0), id="type-mismatch"),
]


@pytest.mark.parametrize(("action", "truth", "reward", "parts"), WORKED)
def test_worked_example(action: dict, truth: dict, reward: float, parts: tuple) -> None:
    """REWARD_CONTRACT.md §7, one row each."""
    gt = parse_ground_truth(truth)
    result = score_completion(C(RATIONALE, action), gt, CONFIG)
    assert result.format_ok
    assert result.failure is None
    got = (result.format, result.type, result.attribute, result.value)
    assert got == pytest.approx(parts, abs=1e-9, rel=0)
    assert result.reward == pytest.approx(reward, abs=1e-9, rel=0)
    assert result.self_certainty is None
    # §5: score = (format + type + attribute + value) / best(gt.type), in [0, 1].
    assert result.score == pytest.approx(reward / CONFIG.best_for(gt.type), abs=1e-12)
    assert result.parsed is not None
    assert result.parsed.action.type == action["type"]
    # The ground truth as a JSON string scores the same (§1).
    again = score_completion(C(RATIONALE, action), parse_ground_truth(json.dumps(truth)), CONFIG)
    assert again == result


def test_worked_examples_that_are_exact_floats() -> None:
    """The rows whose values are exactly representable come out bit-exact."""
    gt = parse_ground_truth(click("refinements.customer_reviews"))
    exact = score_completion(
        C("I check the reviews.", click("refinements.customer_reviews")), gt, CONFIG
    )
    assert (exact.reward, exact.format, exact.type, exact.attribute, exact.value) == (
        1001.0,
        0.5,
        0.3,
        0.2,
        1000.0,
    )
    near = score_completion(C("I check the reviews.", click("refinements.reviews")), gt, CONFIG)
    assert (near.reward, near.value) == (801.0, 800.0)
    term = score_completion(C("I am done.", TERMINATE), parse_ground_truth(TERMINATE), CONFIG)
    assert (term.reward, term.score) == (0.8, 1.0)


@pytest.mark.parametrize(
    "completion",
    [
        pytest.param("```json\n" + C("I leave.", TERMINATE) + "\n```", id="fenced-strict"),
        pytest.param(
            json.dumps({"rationale": "I leave.", "action": TERMINATE, "confidence": 0.9}),
            id="extra-top-level-key",
        ),
    ],
)
def test_worked_example_format_failures(completion: str) -> None:
    """REWARD_CONTRACT.md §7 last two rows: reward 0, every part 0, a failure reason reported."""
    result = score_completion(completion, parse_ground_truth(TERMINATE), CONFIG)
    assert not result.format_ok
    assert (
        result.reward,
        result.score,
        result.format,
        result.type,
        result.attribute,
        result.value,
    ) == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert result.parsed is None
    assert result.failure is not None and result.failure.reason in {"not_json", "extra_keys"}


def test_fenced_is_not_json_and_extra_key_is_extra_keys() -> None:
    gt = parse_ground_truth(TERMINATE)
    fenced = score_completion("```json\n" + C("I leave.", TERMINATE) + "\n```", gt, CONFIG)
    assert fenced.failure is not None and fenced.failure.reason == "not_json"
    extra = json.dumps({"rationale": "I leave.", "action": TERMINATE, "confidence": 0.9})
    result = score_completion(extra, gt, CONFIG)
    assert result.failure is not None and result.failure.reason == "extra_keys"


def test_best_attainable_rewards() -> None:
    """REWARD_CONTRACT.md §3: terminate 0.8, click 1001.0, type_and_submit 1001.1."""
    assert CONFIG.best_for("terminate") == pytest.approx(0.8, abs=1e-12)
    assert CONFIG.best_for("click") == pytest.approx(1001.0, abs=1e-12)
    assert CONFIG.best_for("type_and_submit") == pytest.approx(1001.1, abs=1e-12)
    best = score_completion(
        C("I search for it.", tas("search_input", "usb c cable")),
        parse_ground_truth(tas("search_input", "usb c cable")),
        CONFIG,
    )
    assert best.reward == pytest.approx(1001.1, abs=1e-9)
    assert best.score == pytest.approx(1.0, abs=1e-12)


def test_self_certainty_adds_alpha_times_s_and_not_to_score() -> None:
    """REWARD_CONTRACT.md §4/§5: reward += alpha * s; score excludes it; a failure gets nothing."""
    gt = parse_ground_truth(TERMINATE)
    result = score_completion(C("I leave.", TERMINATE), gt, CONFIG, self_certainty=4.0)
    assert result.reward == pytest.approx(0.8 + 0.005 * 4.0, abs=1e-12)
    assert result.self_certainty == 4.0
    assert result.score == pytest.approx(1.0, abs=1e-12)
    failed = score_completion("not json", gt, CONFIG, self_certainty=4.0)
    assert failed.reward == 0.0
    assert failed.score == 0.0
    # §2: no self-certainty credit at all; the value is dropped, not kept beside a 0.
    assert failed.self_certainty is None
    assert reward_batch(["not json"], [gt], CONFIG, [4.0]) == [0.0]


def test_score_batch_keeps_order_and_checks_lengths() -> None:
    from reward_server.rewards import score_batch

    truths = [parse_ground_truth(TERMINATE), parse_ground_truth(click("buy_now"))]
    texts = [C("I leave.", TERMINATE), C("I buy.", click("buy_now"))]
    results = score_batch(texts, truths, CONFIG, [1.0, None])
    assert [r.reward for r in results] == pytest.approx([0.8 + 0.005, 1001.0])
    assert results == [
        score_completion(texts[0], truths[0], CONFIG, 1.0),
        score_completion(texts[1], truths[1], CONFIG),
    ]
    with pytest.raises(ValueError):
        score_batch(texts, truths[:1], CONFIG)
    with pytest.raises(ValueError):
        score_batch(texts, truths, CONFIG, [1.0])


def test_score_batch_takes_ground_truths_in_every_accepted_form() -> None:
    from reward_server.rewards import reward_batch, score_batch

    truth = tas("search_input", "geforce rtx 5090")
    texts = [C(RATIONALE, tas("search_input", "geforce rtx 5090 rog"))] * 4
    forms = [truth, json.dumps(truth), {"action": truth}, parse_ground_truth(truth)]
    results = score_batch(texts, forms, CONFIG)
    assert len({r.reward for r in results}) == 1
    assert results[0] == score_completion(texts[0], parse_ground_truth(truth), CONFIG)
    assert reward_batch(texts, forms, CONFIG, [2.0, None, 0.0, None]) == [
        results[0].reward + CONFIG.alpha * 2.0,
        results[0].reward,
        results[0].reward,
        results[0].reward,
    ]


@pytest.mark.parametrize(
    ("completions", "truths", "error", "field"),
    [
        ([C("a", TERMINATE), 7], [TERMINATE, TERMINATE], "CompletionTypeError", "completions[1]"),
        (
            [C("a", TERMINATE)] * 3,
            [TERMINATE, TERMINATE, click(" ")],
            "GroundTruthError",
            "ground_truths[2].name",
        ),
        (
            [C("a", TERMINATE)] * 2,
            ['{"action": {"type": "scroll"}}', TERMINATE],
            "GroundTruthError",
            "ground_truths[0].action.type",
        ),
        ([C("a", TERMINATE)] * 2, [TERMINATE, "not json"], "GroundTruthError", "ground_truths[1]"),
    ],
)
@pytest.mark.parametrize("batch", ["score_batch", "reward_batch"])
def test_batches_name_the_first_bad_item(completions, truths, error, field, batch) -> None:
    from reward_server import rewards
    from reward_server.rewards import RewardInputError

    with pytest.raises(RewardInputError) as caught:
        getattr(rewards, batch)(completions, truths, CONFIG)
    assert type(caught.value).__name__ == error
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
