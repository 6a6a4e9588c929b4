"""How many tokens one packed forward may hold.

On CUDA the budget comes from the memory that is free when the backend is built:

    budget = fraction * free_bytes / bytes_per_token,  rounded down to 128, in [floor, cap]

where ``bytes_per_token`` bounds what one token holds at the peak of a decoder layer in
inference (the residual stream and the normed input, the attention's queries, keys,
values and output, then the MLP's gate, up and product: ``4 H + 2 (heads + kv_heads) D +
3 I`` values of the weights' dtype), doubled for the allocator's slack and the
temporaries between kernels. Layers run one after the other, so this does not grow with
depth. A prompt group is split into several documents only beyond the same budget.

On CPU both are settings. Side by side, unrelated documents gain nothing there (a
forward of one ~1,500-token document already keeps the cores busy) and only cost memory,
so a pack holds about one document (``CPU_PACK_TOKENS``), while a prompt group stays one
document up to ``CPU_DOCUMENT_TOKENS`` (splitting it would compute its prompt again).
"""

from __future__ import annotations

from typing import Any

import torch

CPU_PACK_TOKENS = 2048
CPU_DOCUMENT_TOKENS = 16384
CUDA_FRACTION = 0.5  # of the free memory; the rest is left to the reductions and others
CUDA_FLOOR = 2048
CUDA_CAP = 65536  # beyond this a forward is long enough to keep the GPU busy


def bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Upper bound on the activation bytes one token holds inside a decoder layer."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    values = 4 * hidden + 2 * (heads + kv_heads) * head_dim + 3 * inter
    return 2 * values * torch.tensor([], dtype=dtype).element_size() + 64  # + ids, positions


def pack_token_budget(
    config: Any, device: torch.device, dtype: torch.dtype, setting: int | None = None
) -> int:
    """``setting`` when given; else from free CUDA memory, or ``CPU_PACK_TOKENS``."""
    if setting is not None:
        if setting <= 0:
            raise ValueError("pack_tokens must be positive")
        return setting
    if device.type != "cuda":
        return CPU_PACK_TOKENS
    free, _ = torch.cuda.mem_get_info(device)
    budget = int(CUDA_FRACTION * free) // bytes_per_token(config, dtype)
    return max(CUDA_FLOOR, min(CUDA_CAP, budget // 128 * 128))


def document_token_budget(
    pack_budget: int, device: torch.device, setting: int | None = None,
    pack_setting: int | None = None,
) -> int:
    """The size beyond which a prompt group is split: ``setting`` when given; on CPU with
    the default pack budget ``CPU_DOCUMENT_TOKENS``; else the pack budget."""
    if setting is not None:
        if setting <= 0:
            raise ValueError("document_tokens must be positive")
        return setting
    if device.type != "cuda" and pack_setting is None:
        return max(pack_budget, CPU_DOCUMENT_TOKENS)
    return pack_budget
