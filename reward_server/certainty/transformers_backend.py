"""The transformers scoring engine: exact self-certainty from packed forward passes.

For an item with prompt ``x`` and completion ``c`` the value is (REWARD_CONTRACT.md §4)

    s = mean over rationale tokens t of R(z_{t-1} / T)

where ``z_{t-1}`` is the logits row at the position before token t of ``x ++ c`` and R is
the ``kl_uniform`` or ``kl_to_uniform`` row reduction (``reductions``). How:

1. the batch is planned as packs (``packing``): every prompt once, followed by the
   completions that share it, documents of unrelated prompts side by side, up to a token
   budget per forward (``token_budget``: from free memory on CUDA, a setting on CPU);
2. each pack is one forward of the model's decoder with a block-structured attention
   (``packed_attention``: FlexAttention on CUDA, SDPA per document on CPU), so an item
   attends to its own prompt and its own past only: its value does not depend on its
   pack mates;
3. only the final hidden states that predict rationale tokens go through the output
   layer (``output_head``), in chunks of rows, straight into the float32 reductions.

Weights are float32 on CPU (the reference path) and bfloat16 on CUDA; reductions are
float32 either way. A pack that fails (e.g. out of memory) is retried document by
document, so a failure reaches only the items of the document that fails alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from reward_server.certainty import packed_attention
from reward_server.certainty.backend import (
    ScoringForTestsAndBenches,
    certainty_result,
    check_scores,
    finish_batch,
)
from reward_server.certainty.encoding import (
    EncodedItem,
    RequestEncoder,
    failure,
    result_slots_and_prompt_groups,
)
from reward_server.certainty.model_loading import (
    ModelLoadError,
    load_model_and_tokenizer,
    resolve_device,
    resolve_model_dir,
)
from reward_server.certainty.output_head import OutputHead, default_chunk_rows
from reward_server.certainty.packing import Document, Pack, Segment, plan_packs
from reward_server.certainty.reductions import item_means
from reward_server.certainty.token_budget import document_token_budget, pack_token_budget
from reward_server.certainty.types import BatchStats, CertaintyRequest, CertaintyResult

log = logging.getLogger(__name__)


def _max_positions(config: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


class TransformersBackend(ScoringForTestsAndBenches):
    """Self-certainty with a Hugging Face causal LM (synchronous; one thread at a time).

    Build with :meth:`from_pretrained` (``"embedded"`` or a local directory) or
    :meth:`from_model` (an already built model and tokenizer, e.g. a random model of a
    published shape). The backend selects its packed attention on the model (calls
    without a pack stay ordinary SDPA attention). ``pack_tokens`` is the token budget of
    one forward (default: from free memory on CUDA, ``CPU_PACK_TOKENS`` on CPU) and
    ``document_tokens`` the size beyond which a prompt group is split (default: the pack
    budget; ``CPU_DOCUMENT_TOKENS`` on CPU), see ``token_budget``;
    ``attention`` is ``"auto"`` (``flex`` on CUDA, ``sdpa_blocks`` on CPU), ``"flex"`` or
    ``"sdpa_blocks"``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "custom",
        chunk_rows: int | None = None,
        pack_tokens: int | None = None,
        document_tokens: int | None = None,
        attention: str = "auto",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = name
        self.body = model.base_model  # the decoder stack; returns final (normed) hidden states
        head = model.get_output_embeddings()
        if head is None or self.body is model:
            raise ModelLoadError(f"{name}: not a causal LM with a separate output head")
        param = next(model.parameters())
        self.device = param.device
        self.dtype = param.dtype
        # V = width of the logits row, padding included (REWARD_CONTRACT.md §4).
        self.vocab_size = int(head.weight.shape[0])
        self.input_vocab = int(model.get_input_embeddings().weight.shape[0])
        self.max_positions = _max_positions(model.config)
        self.encoder = RequestEncoder(tokenizer, self.input_vocab, self.max_positions)
        self.head = OutputHead(head, getattr(model.config, "final_logit_softcapping", None))
        self.chunk_rows = chunk_rows or default_chunk_rows(self.vocab_size, self.device.type)
        self.pack_tokens = pack_token_budget(model.config, self.device, self.dtype, pack_tokens)
        self.document_tokens = document_token_budget(
            self.pack_tokens, self.device, document_tokens, pack_tokens
        )
        if attention == "auto":
            attention = "flex" if self.device.type == "cuda" else "sdpa_blocks"
        if attention not in packed_attention.ATTENTION_KINDS:
            raise ValueError(f"attention must be auto, flex or sdpa_blocks, not {attention!r}")
        self.attention = attention
        packed_attention.install(model)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, name: str = "custom", **kw: Any
    ) -> TransformersBackend:
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

    def close(self) -> None:
        """Drop the model, its output head included (a tied embedding would otherwise stay
        allocated); on CUDA hand its cached blocks back to the driver."""
        self.model = self.body = self.head = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ scoring
    def encode(self, req: CertaintyRequest) -> EncodedItem | CertaintyResult:
        """Tokenise one request; a :class:`CertaintyResult` is a per-item failure."""
        return self.encoder.encode(req)

    def score_encoded(
        self, items: Sequence[EncodedItem | CertaintyResult]
    ) -> tuple[list[CertaintyResult], BatchStats]:
        """Score encoded items (failures pass through); returns results and batch stats."""
        t0 = time.perf_counter()
        results, groups = result_slots_and_prompt_groups(items)
        packs = plan_packs(items, self.pack_tokens, self.document_tokens, groups)
        tokens = padded = 0
        for pack in packs:
            for part, outcome in self._run_pack(pack, items):
                if isinstance(outcome, Exception):
                    detail = f"{type(outcome).__name__}: {outcome}"
                    for i in part.items:
                        total = items[i].total_tokens  # type: ignore[union-attr]
                        results[i] = failure("backend_error", detail, total)
                    continue
                tokens += part.length
                for i, value in outcome.items():
                    results[i] = certainty_result(items[i], value)  # type: ignore[arg-type]
            padded += packed_attention.padded_length(pack.length, self.attention) - pack.length
        extra = {
            "groups": float(len(groups)),
            "forwards": float(len(packs)),
            "pack_tokens": float(self.pack_tokens),
            "padding_tokens": float(padded),
        }
        return finish_batch(results, time.perf_counter() - t0, tokens, extra)

    def _run_pack(
        self, pack: Pack, items: Sequence[EncodedItem | CertaintyResult]
    ) -> list[tuple[Pack, dict[int, float] | Exception]]:
        """Values of a pack's items; when the pack fails, each document is retried alone
        so that only the items of a document that also fails alone get its error."""
        try:
            return [(pack, self._pack_values(pack, items))]
        except Exception as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(pack.documents) == 1:
                return [(pack, exc)]
            log.warning("a pack of %d documents failed (%s); retrying them one by one",
                        len(pack.documents), exc)
        out: list[tuple[Pack, dict[int, float] | Exception]] = []
        for doc in pack.documents:
            single = _single_document(pack, doc)
            try:
                out.append((single, self._pack_values(single, items)))
            except Exception as exc:  # this document's items fail, the others are kept
                out.append((single, exc))
        return out

    def _pack_values(
        self, pack: Pack, items: Sequence[EncodedItem | CertaintyResult]
    ) -> dict[int, float]:
        rows_of: list[list[int]] = []
        members: list[EncodedItem] = []
        order: list[int] = []
        for doc in pack.documents:
            for seg in doc.segments:
                item = items[seg.item]
                assert isinstance(item, EncodedItem)
                rows_of.append(pack.predicting_rows(doc, seg, item))
                members.append(item)
                order.append(seg.item)
        with torch.inference_mode():
            hidden = self.packed_hidden(pack)
            flat = torch.tensor([r for rows in rows_of for r in rows], device=self.device)
            gathered = hidden[flat].split([len(rows) for rows in rows_of])
            values = item_means(
                list(gathered),
                [it.temperature for it in members],
                [it.kind for it in members],
                self.head,
                self.chunk_rows,
            )
        return dict(zip(order, values, strict=True))

    def packed_hidden(self, pack: Pack) -> torch.Tensor:
        """Final hidden states ``[L, H]`` of one packed forward (padding rows dropped)."""
        layout = packed_attention.PackLayout(pack, self.attention, self.device)
        pad = layout.length - pack.length
        ids = torch.tensor(pack.input_ids + [0] * pad, dtype=torch.long, device=self.device)
        pos = torch.tensor(pack.position_ids + [0] * pad, dtype=torch.long, device=self.device)
        out = self.body(
            input_ids=ids[None],
            position_ids=pos[None],
            attention_mask=packed_attention.skip_mask(self.device),
            use_cache=False,
            **{packed_attention.LAYOUT_KW: layout},
        )
        return out.last_hidden_state[0, : pack.length]

    # ------------------------------------------------------------------ checks
    def warmup(self) -> None:
        """Check the shortcuts against the model's own forward, then score one item.

        1. ``lm_head(final hidden state)`` reproduces the model's logits (architectures
           that post-process logits in ways this backend does not know are refused);
        2. a pack of two documents (one prompt with two completions, one unrelated)
           gives the hidden states that separate plain forwards give (architectures whose
           attention the packed kernels do not reproduce, e.g. sliding windows, are
           refused). With ``flex``, a failure to compile falls back to ``sdpa_blocks``.
        """
        with torch.inference_mode():
            ids = torch.arange(1, 9, device=self.device).clamp(max=self.input_vocab - 1)[None]
            full = self.model(input_ids=ids).logits[0].float()
            mine = self.head(self.body(input_ids=ids).last_hidden_state[0]).float()
            if not _close(full, mine, self.dtype):
                raise ModelLoadError(
                    f"{self.model_name}: logits are not lm_head(final hidden state); "
                    "this architecture is not supported by the transformers backend"
                )
        try:
            self._check_packing()
        except ModelLoadError:
            raise
        except Exception as exc:
            if self.attention != "flex":
                raise ModelLoadError(f"{self.model_name}: packed forward failed: {exc}") from exc
            log.warning("FlexAttention failed (%s: %s); packing with sdpa_blocks instead",
                        type(exc).__name__, exc)
            self.attention = "sdpa_blocks"
            self._check_packing()
        check_scores(self)

    def _check_packing(self) -> None:
        top = max(3, min(self.input_vocab, 200))
        prompt = [(7 * i) % (top - 1) + 1 for i in range(19)]
        other = [(11 * i) % (top - 1) + 1 for i in range(13)]
        completions = [[(5 * i + 3) % (top - 1) + 1 for i in range(n)] for n in (9, 6, 7)]
        pack = Pack()
        fake = [EncodedItem(tuple(prompt), c, [len(c)], "kl_uniform", 1.0) for c in completions]
        pack.add_document(prompt, [(0, fake[0]), (1, fake[1])])
        pack.add_document(other, [(2, fake[2])])
        with torch.inference_mode():
            packed = self.packed_hidden(pack).float()
            for doc in pack.documents:
                for seg in doc.segments:
                    seq = pack.input_ids[doc.start : doc.prompt_end] + pack.input_ids[
                        seg.start : seg.start + seg.length
                    ]
                    alone = self.body(
                        input_ids=torch.tensor([seq], device=self.device)
                    ).last_hidden_state[0].float()
                    got = torch.cat([
                        packed[doc.start : doc.prompt_end],
                        packed[seg.start : seg.start + seg.length],
                    ])
                    if not _close(alone, got, self.dtype):
                        raise ModelLoadError(
                            f"{self.model_name}: the packed forward does not reproduce the "
                            "model's own forward; this architecture is not supported"
                        )


def _close(want: torch.Tensor, got: torch.Tensor, dtype: torch.dtype) -> bool:
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    return bool(torch.allclose(want, got, atol=tol * max(1.0, float(want.abs().max()))))


def _single_document(pack: Pack, doc: Document) -> Pack:
    """A pack holding only ``doc`` (same tokens, indices shifted to start at 0)."""
    shift = doc.start
    single = Pack(
        input_ids=pack.input_ids[doc.start : doc.end],
        position_ids=pack.position_ids[doc.start : doc.end],
    )
    single.documents.append(
        Document(0, doc.prompt_len, [Segment(s.item, s.start - shift, s.length)
                                     for s in doc.segments])
    )
    return single
