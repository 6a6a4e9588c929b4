"""The named profiles of REWARD_CONTRACT.md §8: every worked example, by hand, and what
sets each profile apart (its settings, its hash, the binary credit's exact-match rule)."""

from __future__ import annotations

import json

import pytest

from reward_server.config import PROFILES, RewardConfig, load_config
from reward_server.rewards import (
    Action,
    exact_match,
    parse_completion,
    reward_batch,
    score_batch,
    score_completion,
)

RATIONALE = "I look for what I need."
TERMINATE = {"type": "terminate"}
REVIEWS = {"type": "click", "name": "refinements.customer_reviews"}
SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"}
FENCED = "```json\n" + json.dumps({"rationale": RATIONALE, "action": TERMINATE}) + "\n```"
EXTRA_KEY = json.dumps({"rationale": RATIONALE, "action": TERMINATE, "confidence": 0.9})


def answer(action: dict) -> str:
    return json.dumps({"rationale": RATIONALE, "action": action})


def check(
    profile: str,
    completion: str,
    truth: dict,
    certainty: float | None,
    reward: float,
    score: float,
    parts: tuple[float, float, float, float],
) -> None:
    """The breakdown of one item, and the same reward from the rewards-only path."""
    config = PROFILES[profile]
    result = score_completion(completion, Action(**truth), config, certainty)
    assert result.reward == pytest.approx(reward, abs=1e-12)
    assert result.score == pytest.approx(score, abs=1e-12)
    assert (result.format, result.type, result.attribute, result.value) == pytest.approx(
        parts, abs=1e-12
    )
    assert result.self_certainty == (certainty if result.format_ok else None)
    assert reward_batch([completion], [truth], config, [certainty]) == [result.reward]


BINARY = [  # (completion, ground truth, reward, score, (format, type, attribute, value))
    pytest.param(answer(REVIEWS), REVIEWS, 1.5, 1.0, (0.5, 0, 0, 1.0), id="click-exact"),
    pytest.param(
        answer({"type": "click", "name": "refinements.reviews"}), REVIEWS,
        0.5, 1 / 3, (0.5, 0, 0, 0), id="click-sim-0.8-is-not-exact",
    ),
    pytest.param(
        answer({**SEARCH, "text": "geforce rtx 5090 rog"}), SEARCH,
        1.5, 1.0, (0.5, 0, 0, 1.0), id="tas-sim-0.75-is-exact",
    ),
    pytest.param(
        answer({**SEARCH, "name": " search_input ", "text": "gaming laptop"}), SEARCH,
        0.5, 1 / 3, (0.5, 0, 0, 0), id="tas-text-miss",
    ),
    pytest.param(answer(TERMINATE), TERMINATE, 1.5, 1.0, (0.5, 0, 0, 1.0), id="terminate"),
    pytest.param(
        answer(TERMINATE), {"type": "click", "name": "buy_now"},
        0.5, 1 / 3, (0.5, 0, 0, 0), id="type-mismatch",
    ),
    pytest.param(FENCED, TERMINATE, 0.0, 0.0, (0, 0, 0, 0), id="fenced-format-failure"),
]


@pytest.mark.parametrize(("completion", "truth", "reward", "score", "parts"), BINARY)
def test_binary_worked_examples(
    completion: str, truth: dict, reward: float, score: float, parts: tuple
) -> None:
    check("binary", completion, truth, None, reward, score, parts)


def test_binary_ignores_self_certainty_and_takes_alpha_back_on_request() -> None:
    check("binary", answer(REVIEWS), REVIEWS, 2.0, 1.5, 1.0, (0.5, 0, 0, 1.0))
    config = PROFILES["binary"].with_overrides({"alpha": 0.005})
    result = score_completion(answer(REVIEWS), Action(**REVIEWS), config, 2.0)
    assert result.reward == pytest.approx(1.51)


def test_binary_credit_is_the_evaluation_exact_match() -> None:
    """One rule (§6) decides both the binary credit and exact action accuracy: the credit
    is exact_action_weight exactly where exact_match holds, over steps of every kind."""
    config = PROFILES["binary"].with_overrides({"exact_action_weight": 3.0})
    cases = [
        (answer(action), truth)
        for truth in (REVIEWS, SEARCH, TERMINATE)
        for action in (
            REVIEWS, SEARCH, TERMINATE,
            {"type": "click", "name": " refinements.customer_reviews\n"},
            {"type": "click", "name": "Refinements.customer_reviews"},
            {**SEARCH, "text": "geforce rtx 5090 rog"},
            {**SEARCH, "text": "rtx 5090"},
            {**SEARCH, "name": "search"},
        )
    ] + [("not json", TERMINATE)]
    results = score_batch([c for c, _ in cases], [t for _, t in cases], config)
    expected = [
        3.0 * exact_match(parse_completion(c), Action(**t), config.similarity_threshold)
        for c, t in cases
    ]
    assert [r.value for r in results] == expected
    assert expected.count(3.0) == 5  # both outcomes, several times each
    assert all(r.type == r.attribute == 0.0 for r in results)


NO_FORMAT = [  # (completion, ground truth, s, reward, score, parts)
    pytest.param(
        answer(REVIEWS), REVIEWS, None, 1000.5, 1.0, (0, 0.3, 0.2, 1000.0), id="click-exact"
    ),
    pytest.param(
        answer(REVIEWS), REVIEWS, 2.0, 1000.51, 1.0, (0, 0.3, 0.2, 1000.0), id="with-s"
    ),
    pytest.param(answer(TERMINATE), TERMINATE, None, 0.3, 1.0, (0, 0.3, 0, 0), id="terminate"),
    pytest.param(
        answer(TERMINATE), {"type": "click", "name": "buy_now"}, None,
        0.0, 0.0, (0, 0, 0, 0), id="well-formed-wrong-type",
    ),
    pytest.param(
        answer(TERMINATE), {"type": "click", "name": "buy_now"}, 2.0,
        0.01, 0.0, (0, 0, 0, 0), id="well-formed-wrong-type-with-s",
    ),
    pytest.param(EXTRA_KEY, TERMINATE, 2.0, 0.0, 0.0, (0, 0, 0, 0), id="gate-stays"),
]


@pytest.mark.parametrize(
    ("completion", "truth", "certainty", "reward", "score", "parts"), NO_FORMAT
)
def test_no_format_worked_examples(
    completion: str, truth: dict, certainty: float | None, reward: float, score: float,
    parts: tuple,
) -> None:
    check("no_format", completion, truth, certainty, reward, score, parts)


def test_no_format_keeps_the_gate_and_its_reason() -> None:
    result = score_completion(EXTRA_KEY, Action("terminate"), PROFILES["no_format"], 2.0)
    assert not result.format_ok
    assert result.failure_reason == "extra_keys"
    assert result.self_certainty is None
    well_formed = score_completion(
        answer(TERMINATE), Action("click", "buy_now"), PROFILES["no_format"]
    )
    assert well_formed.format_ok and well_formed.reward == 0.0


NO_SELF_CERTAINTY = [  # (completion, ground truth, s, reward, paper's reward)
    pytest.param(answer(REVIEWS), REVIEWS, 2.0, 1001.0, 1001.01, id="click-exact"),
    pytest.param(answer(TERMINATE), TERMINATE, -4.0, 0.8, 0.78, id="terminate"),
    pytest.param(FENCED, TERMINATE, 2.0, 0.0, 0.0, id="fenced-format-failure"),
]


@pytest.mark.parametrize(("completion", "truth", "certainty", "reward", "paper"), NO_SELF_CERTAINTY)
def test_no_self_certainty_worked_examples(
    completion: str, truth: dict, certainty: float, reward: float, paper: float
) -> None:
    truth_action = Action(**truth)
    ablated = score_completion(completion, truth_action, PROFILES["no_self_certainty"], certainty)
    full = score_completion(completion, truth_action, PROFILES["paper"], certainty)
    assert ablated.reward == pytest.approx(reward, abs=1e-12)
    assert full.reward == pytest.approx(paper, abs=1e-12)
    # The value is still reported (a trainer may log it); it adds nothing.
    assert ablated.self_certainty == (certainty if ablated.format_ok else None)


def test_profiles_are_the_documented_settings() -> None:
    """Each profile differs from `paper` in exactly the settings §8 lists."""
    paper = PROFILES["paper"].model_dump()
    differences = {
        name: {k: v for k, v in config.model_dump().items() if paper[k] != v}
        for name, config in PROFILES.items()
    }
    assert differences == {
        "paper": {},
        "no_dars": {"dars": 1.0},
        "binary": {"action_reward": "binary", "alpha": 0.0},
        "no_format": {"format_weight": 0.0},
        "no_self_certainty": {"alpha": 0.0},
    }
    assert RewardConfig().with_overrides({"action_reward": "binary", "alpha": 0}) == (
        load_config("binary")
    )


def test_every_profile_hashes_differently() -> None:
    hashes = {name: config.config_hash() for name, config in PROFILES.items()}
    assert len(set(hashes.values())) == len(hashes), hashes
    # binary and no_self_certainty differ only in action_reward, which is hashed.
    assert hashes["binary"] != hashes["no_self_certainty"]
