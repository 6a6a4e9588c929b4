"""Where a policy comes from and runs: the embedded SmolLM2 or a model directory, on the
CPU or a GPU."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CACHE_DIR = "~/.cache/shop-r1-reward"
T = TypeVar("T")


def policy_dir(model: str, cache_dir: str = DEFAULT_CACHE_DIR) -> Path:
    """``"embedded"`` (SmolLM2-135M-Instruct, de-quantised once into ``cache_dir``) or a
    local model directory."""
    from reward_server.certainty.model_loading import resolve_model_dir

    folder, _ = resolve_model_dir(model, str(Path(cache_dir).expanduser()))
    return folder


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` where a GPU is visible, else ``cpu`` (the service's rule)."""
    from reward_server.certainty.model_loading import resolve_device as service_device

    return service_device(device)


def bf16_supported(device: str) -> bool:
    import torch

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available()


def sample_rows(rows: Sequence[T], count: int | None, seed: int) -> list[T]:
    """``count`` rows drawn with ``seed`` (all of them, in order, when ``count`` is None or
    not smaller): a subset spread over every episode rather than the first few."""
    if count is None or count >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(f"rows:{seed}").sample(range(len(rows)), count))
    return [rows[i] for i in chosen]


def load_policy(folder: str | Path, device: str, dtype: str = "float32") -> tuple[Any, Any]:
    """A causal LM in ``dtype`` and its tokenizer (left padding, for batched generation),
    loaded as the service loads its scoring model (one model build at a time per process)."""
    import torch

    from reward_server.certainty.model_loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(Path(folder), device)
    model.to(getattr(torch, dtype))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
