"""Self-certainty (REWARD_CONTRACT.md §4): the Scorer seam, its factory, engines, batching.
May import reward_contract, reward_server.config and, lazily, torch/transformers/vLLM.

    from reward_server.certainty import build_scorer
    scorer = build_scorer(model="embedded", device="auto", cache_dir="/var/cache/shop-r1")
    await scorer.start()
    results = await scorer.score([CertaintyRequest(...)])

This package is the only place torch / transformers / vLLM are imported, and only lazily:
importing it (or ``types``) stays light for the rule-only path and the client.

Modules: ``types`` (requests, results, errors), ``scorer_protocol`` (the :class:`Scorer`
seam the service depends on), ``factory`` (the one place scorers are built),
``backend`` (the :class:`ScoringBackend` protocol and what every engine shares around its
forward pass), ``engines`` (the ``--model`` prefix -> engine table), ``encoding``
(validation, tokenisation, rationale positions; ``spans`` holds the span rules),
``reductions`` (the row formulas), ``output_head`` (logits of chosen rows),
``transformers_backend`` (packed forwards: ``packing`` plans them, ``packed_attention``
runs their attention; ``token_budget`` sizes them), ``vllm_backend``, ``batch_queue``
(forms batches), ``scorer`` (the async scorer: lifecycle, reload, executors) and
``model_loading`` (the embedded model, local directories).
"""

from __future__ import annotations

from reward_contract import CertaintyKind
from reward_server.certainty.backend import Loader, ScoringBackend
from reward_server.certainty.factory import build_scorer, scorer_for
from reward_server.certainty.model_loading import ModelLoadError, embedded_model_available
from reward_server.certainty.scorer import BatchObserver, CertaintyScorer
from reward_server.certainty.scorer_protocol import Scorer
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

__all__ = [
    "BatchObserver",
    "BatchStats",
    "CertaintyKind",
    "CertaintyRequest",
    "CertaintyResult",
    "CertaintyScorer",
    "Loader",
    "ModelLoadError",
    "Scorer",
    "ScorerDeadlineExceeded",
    "ScorerError",
    "ScorerNotReady",
    "ScorerOverloaded",
    "ScorerRequestTooLarge",
    "ScoringBackend",
    "build_scorer",
    "embedded_model_available",
    "scorer_for",
]
