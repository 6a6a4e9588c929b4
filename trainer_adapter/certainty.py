"""Self-certainty from a trainer's own logits, to send as ``self_certainty_source="provided"``.

REWARD_CONTRACT.md §4, stated in :mod:`reward_contract.certainty` (which also holds the
rationale span and token mask re-exported here). For each rationale token position t with
logits row ``z_t`` (the row that predicted that token), temperature ``T`` and row width
``V``:

* ``kl_uniform`` (default) = KL(U || p_t) = ``logsumexp(z/T) - mean(z/T) - log V``
* ``kl_to_uniform``        = KL(p_t || U) = ``log V - H(softmax(z/T))``

and the item's value is the mean over its rationale tokens. Rows are reduced in float32
chunks of ``chunk_rows`` positions, so no ``[batch, length, V]`` float32 copy is ever
materialised (only ``[chunk_rows, V]``).

Alignment: the logits row at position ``t`` predicts token ``t + 1``. With a causal LM
over ``prompt + completion`` and ``P`` prompt tokens, the rows that produced the
completion tokens are ``logits[:, P - 1 : -1]``; pass those with a mask over the
completion tokens (``rationale_token_mask``). Example::

    span = rationale_char_span(completion_text)              # characters of the rationale
    enc = tokenizer(completion_text, return_offsets_mapping=True, add_special_tokens=False)
    mask = torch.tensor([rationale_token_mask(enc["offset_mapping"], span)])
    values = self_certainty(logits[:, P - 1 : -1], mask, temperature=0.6)   # shape [1]

torch is imported inside the functions (this module is optional; nothing else in
``trainer_adapter`` imports it). The span helpers need no torch. The service reduces its
rows with ``reward_server.certainty.reductions``, which this package may not import (the
adapters depend on the client only); ``tests/contract`` checks that both give the same
values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from reward_contract import CertaintyKind
from reward_contract.certainty import CERTAINTY_KINDS, rationale_char_span, rationale_token_mask

if TYPE_CHECKING:
    import torch

__all__ = ["rationale_char_span", "rationale_token_mask", "self_certainty"]


def self_certainty(
    logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    kind: CertaintyKind = "kl_uniform",
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """Mean self-certainty over the masked positions of each row: shape ``[batch]``, float32.

    ``logits``: ``[batch, length, V]`` (any float dtype; reduced in float32);
    ``mask``: ``[batch, length]`` bool, True at rationale positions. A row without any
    masked position gets NaN (no value, never 0). Runs under ``torch.no_grad``.
    """
    import torch

    if logits.dim() != 3 or mask.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be [batch, length, V] and mask [batch, length]; got "
            f"{tuple(logits.shape)} and {tuple(mask.shape)}"
        )
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    if kind not in CERTAINTY_KINDS:
        raise ValueError(f"unknown kind {kind!r}: use one of {CERTAINTY_KINDS}")
    batch, length, width = logits.shape
    with torch.no_grad():
        flat_mask = mask.reshape(-1).to(torch.bool)
        positions = flat_mask.nonzero().squeeze(1)
        rows = logits.reshape(-1, width)
        values = torch.empty(positions.numel(), dtype=torch.float32, device=logits.device)
        log_width = math.log(width)
        for start in range(0, positions.numel(), chunk_rows):
            chosen = positions[start : start + chunk_rows]
            z = rows.index_select(0, chosen).to(torch.float32) / temperature
            log_norm = torch.logsumexp(z, dim=-1)
            if kind == "kl_uniform":
                values[start : start + chosen.numel()] = log_norm - z.mean(dim=-1) - log_width
            else:
                probs = torch.softmax(z, dim=-1)
                entropy = log_norm - (probs * z).sum(dim=-1)
                values[start : start + chosen.numel()] = log_width - entropy
        sums = torch.zeros(batch, dtype=torch.float32, device=logits.device)
        sums.index_add_(0, positions // length, values)
        counts = mask.to(torch.bool).sum(dim=1).to(torch.float32)
        return torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan)
