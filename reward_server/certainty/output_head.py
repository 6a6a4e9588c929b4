"""The model's output layer applied to chosen hidden rows: ``z = W h`` (then
``softcap * tanh(z / softcap)`` for models with final logit soft-capping), and how many
rows go through it at once.

Both engines compute logits only for the rows that predict rationale tokens; the
transformers engine uses the model's own ``lm_head`` module, the vLLM engine the same
weight read from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Logits values reduced at once. On CPU ~4M float32 values (16 MB) per chunk, so the
# reductions' temporaries stay small next to the weights; on a GPU ~64M (256 MB, about
# 1 GB of temporaries), so that the thousands of rationale rows of a large pack take tens
# of chunks, not thousands of small kernel launches.
CHUNK_VALUES = {"cpu": 1 << 22, "cuda": 1 << 26}


def default_chunk_rows(vocab_size: int, device_type: str = "cpu") -> int:
    """Rows per reduction chunk for a ``vocab_size``-wide logits row (at least 8)."""
    return max(8, CHUNK_VALUES.get(device_type, CHUNK_VALUES["cpu"]) // vocab_size)


class OutputHead:
    """Callable ``hidden [N, H] -> logits [N, V]``."""

    def __init__(
        self, project: Callable[[torch.Tensor], torch.Tensor], softcap: float | None = None
    ) -> None:
        self._project = project
        self.softcap = softcap or None

    @classmethod
    def from_weight(cls, weight: torch.Tensor, softcap: float | None = None) -> OutputHead:
        """A head from a ``[V, H]`` weight (the hidden rows are cast to its dtype)."""

        def project(hidden: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(hidden.to(weight.dtype), weight)

        return cls(project, softcap)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self._project(hidden)
        if self.softcap:  # Gemma-2 style final soft-capping is part of the model's logits
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits
