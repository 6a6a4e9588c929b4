"""The one table from a ``--model`` setting to the engine that serves it.

``"embedded"`` or ``"<dir>"`` -> the transformers engine; ``"vllm:embedded"`` or
``"vllm:<dir>"`` -> the vLLM engine. An engine's module is imported only when its loader
runs (in the scorer's worker thread), so choosing one never imports torch or vLLM here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from reward_server.certainty.backend import Loader, ScoringBackend


@dataclass(frozen=True)
class Engine:
    """Where an engine's backend class lives; it has ``from_pretrained(model, *, device,
    cache_dir, **kw)``."""

    name: str
    module: str
    backend_class: str


DEFAULT_ENGINE = Engine(
    "transformers", "reward_server.certainty.transformers_backend", "TransformersBackend"
)
ENGINES_BY_PREFIX: dict[str, Engine] = {
    "vllm:": Engine("vllm", "reward_server.certainty.vllm_backend", "VllmBackend"),
}


def split_model_setting(model: str) -> tuple[Engine, str]:
    """``"vllm:/models/x"`` -> (the vLLM engine, ``"/models/x"``); no prefix -> transformers."""
    for prefix, engine in ENGINES_BY_PREFIX.items():
        if model.startswith(prefix):
            return engine, model[len(prefix) :]
    return DEFAULT_ENGINE, model


def engine_loader(
    engine: Engine, device: str, cache_dir: str | None, **backend_kw: Any
) -> Loader:
    """A loader building ``engine``'s backend for a model setting (with or without the
    engine prefix; a reload passes a plain directory). The engine module is imported when
    it runs."""

    def load(model: str) -> ScoringBackend:
        _, target = split_model_setting(model)
        module = importlib.import_module(engine.module)
        backend_class = getattr(module, engine.backend_class)
        return backend_class.from_pretrained(
            target, device=device, cache_dir=cache_dir, **backend_kw
        )

    return load
