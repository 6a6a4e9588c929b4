"""The transformers scoring backend: exact self-certainty with a shared prompt encoding.

For a group of items with the same prompt ``x`` (length P) and completions ``c_i``, the
value of item i is (REWARD_SPEC section 4)

    s_i = mean over rationale tokens t of R(z_{t-1} / T_i)

where ``z_{t-1}`` is the logits row at the position before token t of ``x ++ c_i`` and R
is the ``kl_uniform`` or ``kl_to_uniform`` row reduction (see ``reductions``). How:

1. the prompt is encoded once (chunked prefill into a KV cache; batch 1, so the causal
   SDPA kernel needs no mask). A prompt that only one item of the batch has (and short
   enough for one prefill chunk) is instead run with its completion in one causal
   forward: no cache and no mask;
2. the group's completions are packed into one row after the cache, each with positions
   ``P, P+1, ...`` and a block mask (every completion sees the whole prompt and its own
   past, never another completion): an item's value does not depend on its batch mates;
3. only the final hidden states that predict rationale tokens go through the lm_head, in
   chunks of rows, straight into the float32 reductions: no ``[batch, length, V]`` logits.

Completion tokens after the last rationale token are never fed to the model (causality
makes them irrelevant to the value). With no prompt, the first completion token has no
predicting distribution and is not scored.

This module is the synchronous core: ``score_batch`` is usable from a CLI or a test; the
async micro-batcher runs ``score_encoded`` in a worker thread.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reward_server.certainty.model_loading import (
    EMBEDDED_NAME,
    ModelLoadError,
    load_model_and_tokenizer,
    resolve_device,
    resolve_model_dir,
)
from reward_server.certainty.reductions import KINDS, chunked_certainty
from reward_server.certainty.spans import (
    encode_with_offsets,
    offsets_by_decoding,
    overlapping_positions,
)
from reward_server.certainty.types import (
    BatchStats,
    CertaintyRequest,
    CertaintyResult,
    finish_batch,
    warmup_request,
)

PromptKey = tuple[int, ...]


@dataclass(slots=True)
class EncodedItem:
    """A request after tokenisation: what the forward pass needs and nothing else."""

    prompt_ids: PromptKey
    completion_ids: list[int]
    positions: list[int]  # completion token indices that are scored rationale tokens
    kind: str
    temperature: float

    @property
    def total_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    @property
    def forward_tokens(self) -> int:
        """Completion tokens actually fed to the model (up to the last rationale token)."""
        return self.positions[-1] if self.positions else 0


def group_by_prompt(
    items: Sequence[EncodedItem | CertaintyResult],
) -> tuple[list[CertaintyResult | None], dict[PromptKey, list[int]]]:
    """A batch's result slots, already filled for items that failed before the forward
    pass, and the indices of the others grouped by identical prompt ids (in order)."""
    results: list[CertaintyResult | None] = [
        it if isinstance(it, CertaintyResult) else None for it in items
    ]
    groups: dict[PromptKey, list[int]] = {}
    for i, it in enumerate(items):
        if isinstance(it, EncodedItem):
            groups.setdefault(it.prompt_ids, []).append(i)
    return results, groups


def _failure(reason: str, detail: str | None = None, total: int = 0) -> CertaintyResult:
    return CertaintyResult(value=None, reason=reason, detail=detail, total_tokens=total)


def _max_positions(config: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


class TransformersBackend:
    """Self-certainty with a Hugging Face causal LM (synchronous; one thread at a time).

    Build with :meth:`from_pretrained` (``"embedded"`` or a local directory) or
    :meth:`from_model` (an already built model and tokenizer, e.g. a tiny random model).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "custom",
        chunk_rows: int | None = None,
        prefill_chunk_tokens: int = 4096,
        pack_tokens: int = 2048,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = name
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.pack_tokens = pack_tokens
        self.body = model.base_model  # the decoder stack; returns final (normed) hidden states
        self.head = model.get_output_embeddings()
        if self.head is None or self.body is model:
            raise ModelLoadError(f"{name}: not a causal LM with a separate output head")
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        # V = width of the logits row, padding included (spec section 4).
        self.vocab_size = int(self.head.weight.shape[0])
        self.input_vocab = int(model.get_input_embeddings().weight.shape[0])
        self.max_positions = _max_positions(model.config)
        # Rows of logits reduced at once: ~4M float32 values (16 MB) per chunk by default,
        # so the reductions' temporaries stay small next to the weights.
        self.chunk_rows = chunk_rows or max(8, (1 << 22) // self.vocab_size)
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        # transformers 5.2x renamed the cache argument (past_key_values -> cache).
        params = inspect.signature(self.body.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str = "custom", **kw: Any):
        """Wrap an already constructed model (put in eval mode) and tokenizer."""
        model.eval()
        return cls(model, tokenizer, name=name, **kw)

    @classmethod
    def from_pretrained(
        cls,
        model: str = "embedded",
        *,
        device: str = "auto",
        cache_dir: str | None = None,
        **kw: Any,
    ) -> TransformersBackend:
        """Load ``"embedded"`` (SmolLM2, de-quantised once into ``cache_dir``) or a local dir.

        Raises :class:`ModelLoadError` with a clear message when the model cannot be loaded.
        """
        folder, name = resolve_model_dir(model, cache_dir)
        dev = resolve_device(device)
        loaded, tokenizer = load_model_and_tokenizer(folder, dev)
        return cls(loaded, tokenizer, name=name, **kw)

    @property
    def is_embedded(self) -> bool:
        return self.model_name == EMBEDDED_NAME

    # ------------------------------------------------------------------ encoding
    def _encode_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_ids(self, req: CertaintyRequest) -> list[int]:
        given = [x is not None for x in (req.prompt_text, req.prompt_messages, req.prompt_ids)]
        if sum(given) > 1:
            raise ValueError("set at most one of prompt_text, prompt_messages, prompt_ids")
        if req.prompt_ids is not None:
            return [int(t) for t in req.prompt_ids]
        if req.prompt_messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("the model's tokenizer has no chat template")
            messages = [{"role": role, "content": content} for role, content in req.prompt_messages]
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return self._encode_ids(text)
        if req.prompt_text is not None:
            # Already templated: its special tokens are in the text, add none.
            return self._encode_ids(req.prompt_text)
        return []

    def encode(self, req: CertaintyRequest) -> EncodedItem | CertaintyResult:
        """Tokenise one request; a :class:`CertaintyResult` is a per-item failure."""
        try:
            if req.kind not in KINDS:
                raise ValueError(f"unknown certainty kind {req.kind!r}")
            temp = float(req.temperature)
            if not (math.isfinite(temp) and temp > 0):
                raise ValueError("temperature must be a finite number > 0")
            start, end = req.rationale_span
            if not (0 <= start <= end <= len(req.completion_text)):
                raise ValueError(f"rationale_span {req.rationale_span} outside the completion text")
            prompt = self._prompt_ids(req)
            # Prompt and completion are tokenised separately: the completion's tokens are
            # the ones the policy generated, not a re-tokenisation across the boundary.
            if req.completion_ids is not None:
                completion = [int(t) for t in req.completion_ids]
                decoded, offsets = offsets_by_decoding(self.tokenizer, completion)
                if decoded[:end] != req.completion_text[:end]:
                    return _failure(
                        "span_mismatch",
                        "completion_ids do not decode to completion_text up to the span end",
                        len(prompt) + len(completion),
                    )
            else:
                completion, offsets = encode_with_offsets(self.tokenizer, req.completion_text)
            bad = [t for t in (*prompt, *completion) if not 0 <= t < self.input_vocab]
            if bad:
                raise ValueError(f"token id {bad[0]} outside the model vocabulary")
        except ValueError as exc:
            return _failure("invalid_request", str(exc))
        except Exception as exc:  # tokenizer internals: report, never a silent 0
            return _failure("backend_error", f"tokenisation failed: {exc}")
        total = len(prompt) + len(completion)
        if total > self.max_positions:
            return _failure(
                "too_long", f"{total} tokens > model context {self.max_positions}", total
            )
        positions = overlapping_positions(offsets, (start, end))
        if not prompt:
            positions = [p for p in positions if p > 0]  # token 0 has no predicting row
        if not positions:
            return _failure("empty_span", "no completion token overlaps the rationale", total)
        return EncodedItem(tuple(prompt), completion, positions, req.kind, temp)

    # ------------------------------------------------------------------ scoring
    def score_batch(self, requests: Sequence[CertaintyRequest]) -> list[CertaintyResult]:
        """Encode and score ``requests`` synchronously; one result per request, in order."""
        encoded = [self.encode(r) for r in requests]
        results, _ = self.score_encoded(encoded)
        return results

    def score_encoded(
        self, items: Sequence[EncodedItem | CertaintyResult]
    ) -> tuple[list[CertaintyResult], BatchStats]:
        """Score encoded items (failures pass through); returns results and batch stats.

        Items with identical prompt ids form one group and share one prompt encoding. A
        group that fails (e.g. out of memory) gives ``backend_error`` to its items only.
        """
        t0 = time.perf_counter()
        results, groups = group_by_prompt(items)
        tokens = 0
        for prompt, idxs in groups.items():
            members = [items[i] for i in idxs]
            try:
                values = self._score_group(prompt, members)  # type: ignore[arg-type]
            except Exception as exc:  # one group's failure must not fail its batch mates
                for i, it in zip(idxs, members, strict=True):
                    results[i] = _failure(
                        "backend_error", f"{type(exc).__name__}: {exc}", it.total_tokens
                    )
                continue
            tokens += len(prompt) + sum(it.forward_tokens for it in members)
            for i, it, v in zip(idxs, members, values, strict=True):
                results[i] = CertaintyResult(
                    value=v, rationale_tokens=len(it.positions), total_tokens=it.total_tokens
                )
        return finish_batch(
            results, time.perf_counter() - t0, tokens, {"groups": float(len(groups))}
        )

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden)
        if self._softcap:  # Gemma-2 style final soft-capping is part of the model's logits
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def _prefill(self, prompt: PromptKey) -> tuple[Any, torch.Tensor | None]:
        """Encode the prompt into a KV cache; return it and the last position's hidden state."""
        if not prompt:
            return None, None
        ids = torch.tensor(prompt, dtype=torch.long, device=self.device).unsqueeze(0)
        from transformers import DynamicCache

        # The cache is created here and filled in place, whatever the output field is named.
        cache = DynamicCache(config=self.model.config)
        last = None
        # Chunked prefill bounds activation memory for very long prompts (32k-token HTML).
        for s in range(0, ids.shape[1], self.prefill_chunk_tokens):
            e = min(ids.shape[1], s + self.prefill_chunk_tokens)
            pos = torch.arange(s, e, device=self.device).unsqueeze(0)
            out = self.body(
                input_ids=ids[:, s:e], position_ids=pos, use_cache=True, **{self._cache_kw: cache}
            )
            last = out.last_hidden_state[0, -1]
        return cache, last

    def _score_group(self, prompt: PromptKey, members: list[EncodedItem]) -> list[float]:
        with torch.inference_mode():
            if len(members) == 1 and len(prompt) + members[0].forward_tokens <= (
                self.prefill_chunk_tokens
            ):
                rows = [self._rows_in_one_pass(prompt, members[0])]
            else:
                rows = self._rows_over_shared_prompt(prompt, members)
            temps: list[float] = []
            kinds: list[str] = []
            for it, r in zip(members, rows, strict=True):
                temps.extend([it.temperature] * r.shape[0])
                kinds.extend([it.kind] * r.shape[0])
            hidden_rows = torch.cat(rows, dim=0)
            t = torch.tensor(temps, dtype=torch.float32, device=self.device)
            vals = chunked_certainty(hidden_rows, self._logits, t, kinds, self.chunk_rows)
            vals64 = vals.double().cpu()
            out: list[float] = []
            start = 0
            for r in rows:
                n = r.shape[0]
                out.append(float(vals64[start : start + n].mean()))
                start += n
            return out

    def _rows_in_one_pass(self, prompt: PromptKey, it: EncodedItem) -> torch.Tensor:
        """Hidden states ``[n, H]`` predicting one item's rationale tokens, from a single
        causal forward over prompt + completion inputs.

        A prompt no other item of the batch shares gains nothing from a cache: one forward
        (no cache, no mask, so the fused causal kernel) replaces the prefill and the pack
        forward, which halves the forwards per item where launches dominate (a GPU).
        """
        ids = [*prompt, *it.completion_ids[: it.forward_tokens]]
        out = self.body(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device), use_cache=False
        )
        # Token t is predicted by the row before it in prompt + completion.
        rows = [len(prompt) + t - 1 for t in it.positions]
        return out.last_hidden_state[0, torch.tensor(rows, device=self.device)]

    def _rows_over_shared_prompt(
        self, prompt: PromptKey, members: list[EncodedItem]
    ) -> list[torch.Tensor]:
        """Each member's hidden states ``[n_i, H]`` predicting its rationale tokens, with
        the prompt encoded once into a cache and the completions packed after it."""
        n_prompt = len(prompt)
        cache, prompt_last = self._prefill(prompt)
        # Pack completions (their inputs up to the last rationale token) into rows of at
        # most pack_tokens, each a single forward pass over the shared cache.
        # The pack's additive mask is [Q, P + Q]: with a very long prompt fewer
        # completion tokens go in one pack, so the mask stays under ~16M elements.
        limit = min(self.pack_tokens, max(256, (1 << 24) // (n_prompt + self.pack_tokens)))
        packs: list[list[EncodedItem]] = [[]]
        used = 0
        for it in members:
            if packs[-1] and used + it.forward_tokens > limit:
                packs.append([])
                used = 0
            packs[-1].append(it)
            used += it.forward_tokens
        per_item_rows: dict[int, torch.Tensor] = {}
        for pack in packs:
            hidden = self._forward_pack(pack, n_prompt, cache)
            offset = 0
            for it in pack:
                idx = []
                for t in it.positions:
                    # Token t is predicted by the row before it: completion input t-1,
                    # or the prompt's last position for t == 0.
                    idx.append(-1 if t == 0 else offset + t - 1)
                gathered = []
                if hidden is not None:
                    inner = [j for j in idx if j >= 0]
                    if inner:
                        gathered.append(hidden[torch.tensor(inner, device=self.device)])
                if idx[0] == -1:  # positions are sorted, so t == 0 comes first
                    assert prompt_last is not None
                    gathered.insert(0, prompt_last.unsqueeze(0))
                per_item_rows[id(it)] = torch.cat(gathered, dim=0)
                offset += it.forward_tokens
        return [per_item_rows[id(it)] for it in members]

    def _forward_pack(
        self, pack: list[EncodedItem], n_prompt: int, cache: Any
    ) -> torch.Tensor | None:
        """Hidden states ``[Q, H]`` of the packed completion inputs after the prompt cache."""
        lengths = [it.forward_tokens for it in pack]
        q = sum(lengths)
        if q == 0:
            return None
        ids: list[int] = []
        pos: list[int] = []
        for it, n in zip(pack, lengths, strict=True):
            ids.extend(it.completion_ids[:n])
            pos.extend(range(n_prompt, n_prompt + n))
        # Additive mask [1, 1, Q, P + Q]: 0 = attend, finfo.min = blocked. Every completion
        # sees the whole prompt and, causally, itself; never its pack mates.
        neg = torch.finfo(self.dtype).min
        mask = torch.full((q, n_prompt + q), neg, dtype=self.dtype, device=self.device)
        mask[:, :n_prompt] = 0
        s = 0
        for n in lengths:
            block = torch.ones(n, n, dtype=torch.bool, device=self.device).tril()
            mask[s : s + n, n_prompt + s : n_prompt + s + n].masked_fill_(block, 0)
            s += n
        out = self.body(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
            position_ids=torch.tensor([pos], dtype=torch.long, device=self.device),
            attention_mask=mask[None, None],
            use_cache=cache is not None,
            **{self._cache_kw: cache},
        )
        if cache is not None:
            # The pack's keys/values were appended to the shared cache; drop them so the
            # next pack sees the prompt only.
            extra = cache.get_seq_length() - n_prompt
            if extra > 0:
                cache.crop(-extra)
        return out.last_hidden_state[0]

    # ------------------------------------------------------------------ checks
    def warmup(self) -> None:
        """Check that lm_head(hidden) reproduces the model's logits, then run one item.

        The check guards the shortcut of step 3 against architectures that post-process
        logits in ways this backend does not know (it then refuses to start).
        """
        with torch.inference_mode():
            ids = torch.arange(1, 9, device=self.device).clamp(max=self.input_vocab - 1)[None]
            full = self.model(input_ids=ids).logits[0].float()
            mine = self._logits(self.body(input_ids=ids).last_hidden_state[0]).float()
            tol = 1e-3 if self.dtype == torch.float32 else 5e-2
            if not torch.allclose(full, mine, atol=tol * max(1.0, float(full.abs().max()))):
                raise ModelLoadError(
                    f"{self.model_name}: logits are not lm_head(final hidden state); "
                    "this architecture is not supported by the transformers backend"
                )
        result = self.score_batch([warmup_request()])[0]
        if result.value is None:
            raise ModelLoadError(f"{self.model_name}: warm-up failed: {result.detail}")
