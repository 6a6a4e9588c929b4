"""The pieces of the pipeline on known inputs: evaluation metrics (REWARD_CONTRACT.md §6),
the batch statistics GRPO logs, the SFT targets, the adapter's configuration, and the
policy's self-certainty against the service's own (§4)."""

from __future__ import annotations

import json

import httpx
import pytest

from shop_task import build_task
from shop_train.evaluate import score_answers
from shop_train.grpo import GRPOSettings, adapter_environment, step_log
from shop_train.rationales import load_rationales, sft_target, stand_in_rationale


def answer(action: dict, rationale: str = "I pick this.") -> str:
    return json.dumps({"rationale": rationale, "action": action})


@pytest.fixture(scope="module")
def rows():
    task = build_task()
    by_type = {}
    for row in task.test:
        by_type.setdefault(row.action_type, row)
    return by_type


def test_evaluation_metrics_on_known_predictions(rows):
    click, typed, leave = rows["click"], rows["type_and_submit"], rows["terminate"]
    chosen = [click, click, typed, leave, leave]
    answers = [
        answer(click.ground_truth),                                  # exact
        answer({"type": "click", "name": "Somewhere else"}),         # right type only
        "I would search for it.",                                    # format failure
        answer({"type": "terminate"}),                               # exact
        answer(click.ground_truth),                                  # wrong type
    ]
    metrics = score_answers(answers, chosen)
    assert metrics["count"] == 5
    assert metrics["exact_accuracy"] == pytest.approx(2 / 5)
    assert metrics["type_accuracy"] == pytest.approx(3 / 5)
    assert metrics["format_failure_rate"] == pytest.approx(1 / 5)
    assert metrics["format_failure_reasons"] == {"not_json": 1}
    assert metrics["terminate_share"] == pytest.approx(1 / 5)
    # click: TP 2, FP 1, FN 0 -> 4/5; type_and_submit: FN 1 -> 0; terminate: TP 1, FN 1 -> 2/3
    assert metrics["type_macro_f1"] == pytest.approx((4 / 5 + 0 + 2 / 3) / 3)
    assert metrics["per_type"]["click"]["exact_accuracy"] == pytest.approx(1 / 2)
    assert metrics["per_type"]["terminate"]["predicted"] == 1


def test_grpo_step_log_keeps_the_adapters_statistics():
    history = [
        {"loss": 0.1, "step": 1},
        {"reward": 1.5, "step": 1, "step_time": 2.0, "kl": 0.01, "shop_r1/format_ok": 0.75,
         "shop_r1/terminate_share": 0.5, "shop_r1/value": 1.0},
    ]
    assert step_log(history) == [{
        "step": 1, "reward": 1.5, "step_time": 2.0, "format_ok": 0.75, "terminate_share": 0.5,
        "value": 1.0, "format_failure": 0.25,
    }]


def test_sft_targets_are_the_real_action_with_a_rationale(rows, tmp_path):
    typed = rows["type_and_submit"]
    target = json.loads(sft_target(typed))
    assert target == {"rationale": stand_in_rationale(typed), "action": typed.ground_truth}
    assert target["rationale"].startswith("I ")
    assert typed.ground_truth["text"] in target["rationale"]
    own = tmp_path / "rationales.jsonl"
    own.write_text(json.dumps({"episode_id": typed.episode_id, "step": typed.step,
                               "rationale": "Mine."}) + "\n")
    assert json.loads(sft_target(typed, load_rationales(own)))["rationale"] == "Mine."
    own.write_text("\n" + json.dumps({"episode_id": "e", "rationale": "x"}) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        load_rationales(own)


def test_the_adapter_is_configured_from_the_paper_defaults():
    env = adapter_environment("http://127.0.0.1:9", GRPOSettings(), api_key=None)
    assert env == {
        "SHOP_R1_REWARD_URL": "http://127.0.0.1:9", "SHOP_R1_REWARD_PROFILE": "paper",
        "SHOP_R1_SELF_CERTAINTY_SOURCE": "provided",
        "SHOP_R1_REWARD_CONFIG": json.dumps({"temperature": 0.6}),
    }
    settings = GRPOSettings(profile="binary", certainty="service")
    assert adapter_environment("u", settings, "k")["SHOP_R1_SELF_CERTAINTY_SOURCE"] == "none"
    assert adapter_environment("u", GRPOSettings(certainty="service"), "k") == {
        "SHOP_R1_REWARD_URL": "u", "SHOP_R1_REWARD_PROFILE": "paper",
        "SHOP_R1_SELF_CERTAINTY_SOURCE": "model", "SHOP_R1_API_KEY": "k",
        "SHOP_R1_REWARD_CONFIG": json.dumps({"temperature": 0.6}),
    }


@pytest.mark.slow
def test_the_policys_certainty_equals_the_services_for_the_same_weights(
    tiny_policy, start_server, rows
):
    """What GRPO sends as ``provided`` is what the service computes from the same model
    (REWARD_CONTRACT.md §4), prompt and temperature included; a format failure gets none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shop_train.policy_certainty import PolicyCertainty

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_policy))
    certainty = PolicyCertainty(tokenizer, temperature=0.6, batch_size=2)
    certainty.model = AutoModelForCausalLM.from_pretrained(str(tiny_policy))
    chosen = list(rows.values())
    completions = [
        answer(row.ground_truth, f"I look at {row.site} and act on my goal.") for row in chosen
    ]
    prompts = [row.messages for row in chosen]
    ours = certainty([*prompts, prompts[0]], [*completions, "not json"])
    assert ours[-1] is None and all(isinstance(v, float) for v in ours[:-1])

    server = start_server(model=str(tiny_policy))
    items = [
        {"completion": c, "ground_truth": row.ground_truth, "prompt": row.messages}
        for c, row in zip(completions, chosen, strict=True)
    ]
    body = httpx.post(
        server.url + "/v1/rewards", timeout=120,
        json={"items": items, "config": {"temperature": 0.6}, "self_certainty_source": "model"},
    ).json()
    theirs = [r["components"]["self_certainty"] for r in body["results"]]
    assert ours[:-1] == pytest.approx(theirs, rel=1e-4, abs=1e-4)
