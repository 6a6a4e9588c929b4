"""Attention over a packed row of documents (``packing``), plugged into transformers.

The rule, for query token ``q`` and key token ``k`` of one pack:

    allowed(q, k) = doc(q) == doc(k)  and  k <= q  and  (prompt(k) or seg(k) == seg(q))

(a prompt token is its own document's segment ``-1``: it sees the prompt causally; a
completion token sees its prompt and its own past). Two kernels compute it:

* ``flex``: FlexAttention (``torch.nn.attention.flex_attention``, compiled) with a block
  mask over the whole row. The block lists are derived from the document structure, not
  from a dense ``L x L`` mask: for each 128-token query block, the key blocks that may hold
  an allowed pair (``kv_indices``, where the rule above is applied per element) and those
  where every pair is allowed (``full_kv_indices``, no masking work). The GPU path.
* ``sdpa_blocks``: scaled-dot-product attention document by document: the prompt (or a
  prompt with its single completion) as one causal call; the completions of a shared
  prompt in query chunks against the prompt's keys and their own, with a boolean mask of
  at most ``MASK_ELEMENTS`` per chunk. The CPU path (FlexAttention does not fuse there
  without a compiler) and the fallback.

The function is registered with transformers' ``AttentionInterface`` under
``ATTENTION_NAME``; a call without a :class:`PackLayout` (``LAYOUT_KW``) is ordinary SDPA
attention with transformers' own mask, so the model still works as usual. A packed call
passes an empty 4-D ``attention_mask`` (:func:`skip_mask`), which transformers returns
as-is instead of building a mask.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from reward_server.certainty.packing import Pack

ATTENTION_NAME = "shop_r1_packed"
LAYOUT_KW = "certainty_pack"
BLOCK = 128  # FlexAttention's block size; a flex pack is padded to a multiple of it
# The compiler specialises a size of 1: a one-block row (the warm-up's, a short request)
# would compile a graph for one block only and every longer pack a second one. From two
# blocks on, one graph with a symbolic block count serves every pack (see _block_mask).
MIN_FLEX_BLOCKS = 2
MASK_ELEMENTS = 1 << 22  # largest boolean mask one sdpa_blocks call builds

ATTENTION_KINDS = ("flex", "sdpa_blocks")


@dataclass(frozen=True, slots=True)
class _Doc:
    start: int
    prompt_end: int
    end: int
    segment_starts: list[int]  # of its completions, in order (zero-length ones included)


class PackLayout:
    """Where the documents and segments of one pack lie, for the attention kernels.

    ``length`` is the padded length for ``flex`` (pad tokens form a document of their
    own), the pack's length for ``sdpa_blocks``.
    """

    def __init__(self, pack: Pack, kind: str, device: torch.device) -> None:
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, not {kind!r}")
        self.kind = kind
        self.device = device
        self.docs = [
            _Doc(d.start, d.prompt_end, d.end, [s.start for s in d.segments])
            for d in pack.documents
        ]
        self.length = padded_length(pack.length, kind)
        tokens = token_table(pack_runs(pack, self.length), self.length, device)
        self.seg = tokens["seg"]
        self.block_mask = _block_mask(tokens, self.length, device) if kind == "flex" else None
        self._chunk_cache: dict[int, list[tuple[int, int, int, torch.Tensor]]] = {}

    # ------------------------------------------------------------------ kernels
    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``[1, H, L, D]`` queries, ``[1, Hkv, L, D]`` keys and values -> ``[1, L, H, D]``."""
        if query.shape[2] != self.length or key.shape[2] != self.length:
            raise ValueError(
                f"packed attention over {query.shape[2]} queries and {key.shape[2]} keys, "
                f"layout of {self.length} (a cache is not supported)"
            )
        if self.kind == "flex":
            out = compiled_flex_attention()(
                query, key, value, block_mask=self.block_mask, scale=scale, enable_gqa=True
            )
        else:
            out = self._attend_blocks(query, key, value, scale)
        return out.transpose(1, 2).contiguous()

    def _attend_blocks(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        out = torch.empty_like(q)
        for d in self.docs:
            s, p, e = d.start, d.prompt_end, d.end
            if len(d.segment_starts) <= 1:  # a prompt and at most one completion: causal
                if e > s:
                    out[:, :, s:e] = sdpa(
                        q[:, :, s:e], k[:, :, s:e], v[:, :, s:e],
                        is_causal=True, scale=scale, enable_gqa=gqa,
                    )
                continue
            if p > s:
                out[:, :, s:p] = sdpa(
                    q[:, :, s:p], k[:, :, s:p], v[:, :, s:p],
                    is_causal=True, scale=scale, enable_gqa=gqa,
                )
            repeat = q.shape[1] // k.shape[1]
            for ka, qa, qb, mask in self._chunks(d):
                keys = torch.cat([k[:, :, s:p], k[:, :, ka:qb]], dim=2)
                values = torch.cat([v[:, :, s:p], v[:, :, ka:qb]], dim=2)
                if repeat > 1:  # with a mask, grouped heads would fall back to the math kernel
                    keys = keys.repeat_interleave(repeat, dim=1)
                    values = values.repeat_interleave(repeat, dim=1)
                out[:, :, qa:qb] = sdpa(q[:, :, qa:qb], keys, values, attn_mask=mask, scale=scale)
        return out

    def _chunks(self, d: _Doc) -> list[tuple[int, int, int, torch.Tensor]]:
        """Query chunks ``[qa, qb)`` of a shared-prompt document's completions, each with
        the first key ``ka`` it needs beyond the prompt (the start of the completion
        holding ``qa``) and its mask; computed once per pack, used by every layer."""
        cached = self._chunk_cache.get(d.start)
        if cached is not None:
            return cached
        s, p, e = d.start, d.prompt_end, d.end
        chunks = []
        qa = p
        while qa < e:
            ka = d.segment_starts[bisect.bisect_right(d.segment_starts, qa) - 1]
            qb = min(e, qa + _rows_within((p - s) + (qa - ka), MASK_ELEMENTS))
            chunks.append((ka, qa, qb, self._completion_mask(s, p, ka, qa, qb)))
            qa = qb
        self._chunk_cache[d.start] = chunks
        return chunks

    def _completion_mask(self, s: int, p: int, ka: int, qa: int, qb: int) -> torch.Tensor:
        """``[qb - qa, (p - s) + (qb - ka)]``: the whole prompt, then the own completion
        causally (True = attend)."""
        q_idx = torch.arange(qa, qb, device=self.device)
        k_idx = torch.arange(ka, qb, device=self.device)
        own = (self.seg[k_idx][None, :] == self.seg[q_idx][:, None]) & (
            k_idx[None, :] <= q_idx[:, None]
        )
        prompt = torch.ones(qb - qa, p - s, dtype=torch.bool, device=self.device)
        return torch.cat([prompt, own], dim=1)


def padded_length(length: int, kind: str) -> int:
    """A pack's row length for ``kind``: flex rounds up to whole blocks, at least
    ``MIN_FLEX_BLOCKS`` of them."""
    if kind != "flex":
        return length
    return max(MIN_FLEX_BLOCKS * BLOCK, -(-length // BLOCK) * BLOCK)


def _rows_within(context: int, elements: int) -> int:
    """Largest x >= 1 with x * (context + x) <= elements."""
    x = int((-context + math.sqrt(context * context + 4 * elements)) / 2)
    return max(1, x)


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive tokens of one prompt or one completion."""

    start: int
    length: int
    doc_start: int
    prompt_end: int
    prompt: bool


def pack_runs(pack: Pack, length: int) -> list[Run]:
    """The runs that tile a pack's row of ``length`` tokens; padding after the pack's
    tokens is a prompt-only document of its own."""
    runs = []
    for d in pack.documents:
        if d.prompt_len:
            runs.append(Run(d.start, d.prompt_len, d.start, d.prompt_end, True))
        for s in d.segments:
            if s.length:
                runs.append(Run(s.start, s.length, d.start, d.prompt_end, False))
    if length > pack.length:
        runs.append(Run(pack.length, length - pack.length, pack.length, length, True))
    return runs


def token_table(runs: list[Run], length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-token ``doc_start``, ``prompt_end``, ``seg_start``, ``prompt`` and ``seg`` (the
    run number, increasing along the row), built from the runs without a Python loop over
    tokens."""
    starts = torch.tensor([r.start for r in runs], dtype=torch.int64)
    lengths = torch.tensor([r.length for r in runs], dtype=torch.int64)
    if int(lengths.sum()) != length or (starts != torch.cumsum(lengths, 0) - lengths).any():
        raise ValueError("the pack's runs do not tile its row")

    def per_token(values: list[int] | list[bool], dtype: torch.dtype) -> torch.Tensor:
        return torch.repeat_interleave(torch.tensor(values, dtype=dtype), lengths).to(device)

    return {
        "seg": per_token(list(range(len(runs))), torch.int32),
        "seg_start": per_token([r.start for r in runs], torch.int64),
        "doc_start": per_token([r.doc_start for r in runs], torch.int64),
        "prompt_end": per_token([r.prompt_end for r in runs], torch.int64),
        "prompt": per_token([r.prompt for r in runs], torch.bool),
    }


def block_lists(
    tokens: dict[str, torch.Tensor], length: int, block: int = BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(partial, full)`` boolean ``[length / block, length / block]`` block matrices.

    For every query token the allowed keys are two intervals: ``[doc_start, prompt_end)``
    (completion tokens only) and ``[seg_start, q]``. A key block *may* hold an allowed pair
    when some query of the block has an interval touching it; it is *full* when every
    query of the block has an interval covering it whole. Counted with difference arrays:
    no ``L x L`` structure is built.
    """
    if length % block:
        raise ValueError("the length must be a multiple of the block size")
    n = length // block
    dev = tokens["seg"].device
    q = torch.arange(length, device=dev)
    q_block = q // block
    completion = ~tokens["prompt"]
    # interval 1: [doc_start, prompt_end) for completion tokens with a prompt
    lo1, hi1 = tokens["doc_start"], tokens["prompt_end"]  # half-open
    has1 = completion & (hi1 > lo1)
    # interval 2: [seg_start, q] (closed), never empty
    lo2, hi2 = tokens["seg_start"], q + 1

    def count(pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        diff = torch.zeros(n, n + 1, dtype=torch.int32, device=dev)
        for first, last, valid in pairs:  # key blocks [first, last], where valid
            ok = valid & (last >= first)
            rows = q_block[ok]
            diff.index_put_((rows, first[ok]), torch.ones_like(rows, dtype=torch.int32),
                            accumulate=True)
            diff.index_put_((rows, last[ok] + 1), -torch.ones_like(rows, dtype=torch.int32),
                            accumulate=True)
        return torch.cumsum(diff, dim=1)[:, :n]

    everywhere = torch.ones_like(completion)
    touched = count([
        (lo1 // block, (hi1 - 1) // block, has1),
        (lo2 // block, (hi2 - 1) // block, everywhere),
    ])
    covered = count([
        (-(-lo1 // block), hi1 // block - 1, has1),
        (-(-lo2 // block), hi2 // block - 1, everywhere),
    ])
    full = covered == block
    partial = (touched > 0) & ~full
    return partial, full


def _indices(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts ``[1, 1, n]``, indices ``[1, 1, n, n]``) with each row's blocks first."""
    counts = blocks.sum(dim=1, dtype=torch.int32)
    order = torch.argsort(blocks.to(torch.int8), dim=1, descending=True, stable=True)
    return counts[None, None].contiguous(), order.to(torch.int32)[None, None].contiguous()


def _block_mask(tokens: dict[str, torch.Tensor], length: int, device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import BlockMask

    seg, doc, prompt = tokens["seg"], tokens["doc_start"], tokens["prompt"]

    def mask_mod(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        same_doc = doc[q_idx] == doc[kv_idx]
        return same_doc & (kv_idx <= q_idx) & (prompt[kv_idx] | (seg[kv_idx] == seg[q_idx]))

    partial, full = block_lists(tokens, length)
    kv_num, kv_idx = _indices(partial)
    full_num, full_idx = _indices(full)
    mask = BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx,
        BLOCK_SIZE=BLOCK, mask_mod=mask_mod, seq_lengths=(length, length),
    )
    # Dynamo compiles the block lists with the sizes of the first pack it sees, even with
    # dynamic=True, and recompiles at the first pack of another length: marked, the first
    # graph (the warm-up's) has a symbolic block count and serves every pack.
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                 "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
        blocks = getattr(mask, name)
        for dim in range(2, blocks.dim()):
            torch._dynamo.maybe_mark_dynamic(blocks, dim)
    return mask


_FLEX: Callable[..., torch.Tensor] | None = None


def compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """``flex_attention`` compiled once per process with dynamic shapes (pack lengths
    vary from batch to batch); uncompiled it would materialise the whole score matrix.

    ``fullgraph``: where dynamo cannot compile a call (a graph break, or its limit of
    graphs per function reached) it would otherwise run ``flex_attention`` uncompiled,
    silently: the unfused kernel, ``L x L`` scores per head, while the backend reports
    ``flex``. It raises instead (in warm-up: the fall-back to ``sdpa_blocks``, logged)."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention, dynamic=True, fullgraph=True)
    return _FLEX


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: packed when a :class:`PackLayout` is passed."""
    layout: PackLayout | None = kwargs.pop(LAYOUT_KW, None)
    if layout is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    for unsupported in ("sliding_window", "softcap"):
        if kwargs.get(unsupported):
            raise NotImplementedError(f"packed attention does not implement {unsupported}")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return layout.attend(query, key, value, scale), None


def install(model: Any) -> None:
    """Register :func:`packed_attention` with transformers (once) and select it for
    ``model``; calls without a layout stay ordinary SDPA attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    model.config._attn_implementation = ATTENTION_NAME


def skip_mask(device: torch.device) -> torch.Tensor:
    """An empty 4-D mask: transformers passes a 4-D mask through unchanged, so it builds
    no ``L x L`` mask for a packed call (the layout carries the structure)."""
    return torch.zeros(1, 1, 0, 0, dtype=torch.bool, device=device)
