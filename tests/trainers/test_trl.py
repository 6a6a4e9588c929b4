"""TRL 1.16's own reward path (``GRPOTrainer._calculate_rewards``: reward functions
called with every dataset column, async ones gathered on TRL's background loop) with
``trainer_adapter.trl.shop_r1_reward`` on 200 completions of 25 prompts, against the real
service; each reward equals the CLI's. ``tests/adapters/test_trl_grpo.py`` runs whole
training steps with the same function."""

from __future__ import annotations

import struct

import pytest

pytest.importorskip("trl")

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer

from tests.trainers import shopping
from tests.trainers.conftest import cli_scores
from trainer_adapter.trl import shop_r1_reward

pytestmark = pytest.mark.slow


def float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def tiny_trainer(tokenizer, rows: list[dict], output_dir) -> GRPOTrainer:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    args = GRPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=8, num_generations=8,
        max_completion_length=8, report_to=[], use_cpu=True, bf16=False, save_strategy="no",
    )
    return GRPOTrainer(
        model=LlamaForCausalLM(config), reward_funcs=[shop_r1_reward], args=args,
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
    )


def test_grpo_reward_path_200_completions(rules_server, smollm2_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    rows = shopping.rows(25)
    trainer = tiny_trainer(smollm2_tokenizer, rows, tmp_path)
    inputs, prompts, completions = [], [], []
    for row in rows:
        for answer in shopping.answers(row["ground_truth"], 8):
            inputs.append(row)  # every dataset column, as TRL repeats them per generation
            prompts.append(row["prompt"])
            completions.append([{"role": "assistant", "content": answer}])
    completion_ids = [smollm2_tokenizer(c[0]["content"])["input_ids"] for c in completions]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, completion_ids)
    assert rewards.shape == (200, 1) and not torch.isnan(rewards).any()
    items = [{"completion": c[0]["content"], "ground_truth": row["ground_truth"]}
             for c, row in zip(completions, inputs, strict=True)]
    expected = [float32(line["reward"]) for line in cli_scores(items, tmp_path)]
    assert rewards[:, 0].tolist() == expected
    logged = trainer._pending_metrics  # what TRL averages into the next log line
    assert logged["shop_r1/unscored"] == [0.0]
    # A well-formed answer earns at least the format reward (0.5): format_ok <=> reward > 0.
    assert logged["shop_r1/format_ok"][0] == pytest.approx(sum(r > 0 for r in expected) / 200)
