"""Row reductions of self-certainty (REWARD_CONTRACT.md §4), chunked, in float32 or wider.

For one logits row ``z`` (width ``V``) at temperature ``T``, with ``y = z / T`` and
``p = softmax(y)``:

* ``kl_uniform``    = KL(U || p) = logsumexp(y) - mean(y) - log V
* ``kl_to_uniform`` = KL(p || U) = log V - H(p) = log V - logsumexp(y) + sum(p * y)

Example: a uniform row (all ``z`` equal) gives 0 for both; ``z = [0, log 3]`` at ``T = 1``
gives ``kl_uniform = log(4) - log(3)/2 - log 2 = 0.1438`` (p = [1/4, 3/4]).

The value of a completion is the mean of its rationale rows. Rows are processed in chunks
so that at most ``chunk_rows x V`` float32 values exist at once: a ``[batch, length, V]``
log-softmax is never built.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from reward_server.certainty.encoding import KINDS


def row_certainty(
    logits: torch.Tensor, temperature: torch.Tensor | float, kind: str
) -> torch.Tensor:
    """Per-row self-certainty of ``logits [N, V]``, computed in float32 (or float64 if given).

    ``temperature`` is a scalar or a per-row tensor ``[N]``. Returns a tensor ``[N]``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown certainty kind {kind!r}; known: {KINDS}")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    y = logits.to(dtype)
    if isinstance(temperature, torch.Tensor):
        y = y / temperature.to(device=y.device, dtype=dtype).unsqueeze(-1)
    else:
        y = y / float(temperature)
    log_v = math.log(y.shape[-1])
    lse = torch.logsumexp(y, dim=-1)
    if kind == "kl_uniform":
        return lse - y.mean(dim=-1) - log_v
    # sum(p * y) without a second [N, V] buffer for log p: softmax then a dot per row.
    p = torch.softmax(y, dim=-1)
    return log_v - lse + (p * y).sum(dim=-1)


def chunked_certainty(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    temperatures: torch.Tensor,
    kinds: list[str],
    chunk_rows: int = 256,
) -> torch.Tensor:
    """Self-certainty of the rows ``head(hidden)`` without materialising all logits at once.

    ``hidden [N, H]`` are the final hidden states of the positions that predict rationale
    tokens; ``head`` maps them to logits (the model's lm_head). ``temperatures [N]`` and
    ``kinds`` (length N) are per row. Returns float32 ``[N]`` on the hidden's device.
    """
    n = hidden.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=hidden.device)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        logits = head(hidden[start:stop])
        temps = temperatures[start:stop]
        chunk_kinds = kinds[start:stop]
        for kind in KINDS:
            rows = [i for i, k in enumerate(chunk_kinds) if k == kind]
            if not rows:
                continue
            if len(rows) == stop - start:
                out[start:stop] = row_certainty(logits, temps, kind).float()
            else:
                idx = torch.tensor(rows, device=hidden.device)
                out[start + idx] = row_certainty(logits[idx], temps[idx], kind).float()
        del logits
    return out


def item_means(
    rows: list[torch.Tensor],
    temperatures: list[float],
    kinds: list[str],
    head: Callable[[torch.Tensor], torch.Tensor],
    chunk_rows: int,
) -> list[float]:
    """Each item's value: the mean over its rows ``rows[i] [n_i, H]`` (hidden states that
    predict its rationale tokens) of the reduction of ``head(row) / T_i``, accumulated in
    float64. All items' rows go through :func:`chunked_certainty` together."""
    if not rows:
        return []
    hidden = torch.cat(rows, dim=0)
    row_temps: list[float] = []
    row_kinds: list[str] = []
    for r, t, k in zip(rows, temperatures, kinds, strict=True):
        row_temps.extend([t] * r.shape[0])
        row_kinds.extend([k] * r.shape[0])
    temps = torch.tensor(row_temps, dtype=torch.float32, device=hidden.device)
    values = chunked_certainty(hidden, head, temps, row_kinds, chunk_rows).double().cpu()
    out: list[float] = []
    start = 0
    for r in rows:
        n = r.shape[0]
        out.append(float(values[start : start + n].mean()))
        start += n
    return out
