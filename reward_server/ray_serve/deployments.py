"""The two Serve deployments: ``RewardIngress`` (HTTP) and ``CertaintyModel`` (the model).

``RewardIngress`` serves the app that :func:`~reward_server.api.app.create_app` builds,
so routes, schemas, error shapes, limits and bearer auth are the single-process
service's own; its scorer is a :class:`.RemoteCertaintyScorer` over the model
deployment. ``CertaintyModel`` runs the project's :class:`CertaintyScorer` (transformers,
or vLLM with a ``vllm:`` model setting): its micro-batcher coalesces the calls that reach
the replica and encodes a shared prompt once per batch. Options (replicas, resources,
routing) are applied by :mod:`.app`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.exceptions import DeploymentUnavailableError

from reward_server.api.app import create_app
from reward_server.certainty.factory import scorer_for
from reward_server.certainty.scorer_protocol import Scorer
from reward_server.certainty.types import (
    CertaintyRequest,
    CertaintyResult,
    ScorerError,
    ScorerNotReady,
)
from reward_server.config import ServerSettings
from reward_server.ray_serve.coalesce import KeyedCoalescer
from reward_server.ray_serve.remote_scorer import RemoteCertaintyScorer
from reward_server.ray_serve.replica_metrics import MetricsEndpoint, ObserverFanout, WorkCounts
from reward_server.ray_serve.wire import MetricsTarget, ModelFailure, ModelState
from reward_server.telemetry import Telemetry

# Under Serve's logger, so that the lines land in the replica's log file with Serve's own.
log = logging.getLogger(f"ray.serve.{__name__}")


class _Replica:
    """What a replica of either deployment has: who it is (application, deployment,
    replica id, node id) and, optionally, its own metrics endpoint."""

    _metrics: MetricsEndpoint | None = None

    def _identify(self) -> None:
        context = serve.get_replica_context()
        self._app, self._deployment = context.app_name, context.deployment
        self._replica = context.replica_id.unique_id
        self._node_id = ray.get_runtime_context().get_node_id()

    def _open_metrics(self, enabled: bool) -> None:
        if enabled:
            self._metrics = MetricsEndpoint(
                ray.util.get_node_ip_address(), self._deployment, self._replica, self._node_id
            )

    def metrics_target(self) -> MetricsTarget | None:
        return self._metrics.target if self._metrics else None

    def _close_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()


class CertaintyModel(_Replica):
    """One model replica: the project's scorer, its counts, its metrics endpoint."""

    async def __init__(
        self, settings: dict[str, Any], group_window_ms: float = 0.0, metrics_endpoints: bool = True
    ) -> None:
        server = ServerSettings.model_validate(settings)
        self._identify()
        self._counts = WorkCounts()
        self._telemetry = Telemetry()
        observer = ObserverFanout(self._telemetry, self._counts)
        scorer = scorer_for(server, observer)
        if scorer is None:
            raise ValueError("the model deployment needs a model setting (not 'none')")
        self._scorer: Scorer = scorer
        await self._scorer.start()
        self._groups: KeyedCoalescer[CertaintyRequest, CertaintyResult] | None = (
            KeyedCoalescer(self._scorer.score, group_window_ms / 1000, server.max_items_per_batch)
            if group_window_ms > 0
            else None
        )
        self._generation = 0
        self._model_dir: str | None = None
        self._reload_lock = asyncio.Lock()
        self._in_flight = 0
        await self._catch_up_with_peers()
        self._open_metrics(metrics_endpoints)
        log.info("model replica %s ready: %s", self._replica, self._scorer.model_name)

    async def _catch_up_with_peers(self) -> None:
        """Load the newest weights a running peer was reloaded to, so a replica that
        starts after a reload scores like the others from its first request."""
        try:
            handle = serve.get_deployment_handle(self._deployment, self._app)
            response = handle.broadcast("state")
            peers = await response.results_async(timeout_s=30.0, return_exceptions=True)
        except Exception as exc:  # no running peer yet (first deployment) or none reachable
            log.info("no peer state to catch up with: %s", exc)
            return
        reloaded = [(p.generation, p.model_dir) for p in peers
                    if isinstance(p, ModelState) and p.model_dir]
        if reloaded:
            generation, model_dir = max(reloaded)
            outcome = await self.reload(model_dir, generation)
            if outcome.error:
                raise RuntimeError(f"could not load the peers' weights: {outcome.error}")

    async def score(
        self, requests: list[CertaintyRequest], remaining_s: float | None, key: str | None
    ) -> list[CertaintyResult] | ModelFailure:
        """Self-certainty of ``requests`` (one prompt group, or items without a prompt)."""
        deadline = None if remaining_s is None else time.monotonic() + remaining_s
        self._in_flight += 1
        try:
            # A call of one item is a sample sent on its own (a trainer posting one
            # sample per request); a call of several already holds its group together.
            if key is not None and self._groups is not None and len(requests) == 1:
                results = await self._groups.submit(key, requests, deadline)
            else:
                results = await self._scorer.score(requests, deadline)
        except ScorerError as exc:
            return ModelFailure.of(exc)
        except TimeoutError:
            return ModelFailure("deadline", "deadline passed while the group was scored")
        finally:
            self._in_flight -= 1
        self._counts.record_key(key, len(requests))
        return results

    def state(self) -> ModelState:
        return ModelState(
            replica=self._replica,
            node_id=self._node_id,
            model_name=self._scorer.model_name,
            ready=self._scorer.ready,
            generation=self._generation,
            model_dir=self._model_dir,
            in_flight=self._in_flight,
        )

    async def reload(self, model_dir: str, generation: int) -> ModelState:
        """Load ``model_dir`` unless this replica already has ``generation`` or newer;
        a refusal (outside the reload root, not a model) leaves the weights unchanged."""
        async with self._reload_lock:
            if generation > self._generation:
                try:
                    await self._scorer.reload(model_dir)
                except (ValueError, OSError, RuntimeError, ScorerError) as exc:
                    # ModelLoadError is a RuntimeError; the ingress answers 422 with it.
                    return replace(self.state(), error=str(exc))
                self._generation, self._model_dir = generation, model_dir
        return self.state()

    def stats(self, with_keys: bool = False) -> dict[str, Any]:
        """What this replica computed (tests, benchmarks): counts, and per key items."""
        return {
            "replica": self._replica,
            "node_id": self._node_id,
            "pid": os.getpid(),
            **self._counts.snapshot(with_keys),
        }

    def check_health(self) -> None:
        """Serve replaces a replica whose model is no longer loaded."""
        if not self._scorer.ready:
            raise ScorerNotReady("the model is not loaded")

    async def __del__(self) -> None:
        # Serve calls this after the replica drained its in-flight calls.
        await self._scorer.stop()
        self._close_metrics()


async def _metrics_targets_of(handle: Any) -> list[MetricsTarget]:
    """The metrics endpoints of a deployment's running replicas; none while it has no
    running replica (a model deployment still placing its first one), so that discovery
    keeps listing the rest rather than failing as a whole."""
    try:
        response = handle.broadcast("metrics_target")
        answers = await response.results_async(timeout_s=10.0, return_exceptions=True)
    except (DeploymentUnavailableError, TimeoutError) as exc:
        log.info("no metrics targets from %s: %s", handle.deployment_name, exc)
        return []
    return [answer for answer in answers if isinstance(answer, MetricsTarget)]


@serve.ingress()
class RewardIngress(_Replica):
    """One HTTP replica: the service's FastAPI app, rules scored here."""

    async def __init__(
        self,
        settings: dict[str, Any],
        model: Any = None,
        route_by_prompt: bool = True,
        metrics_endpoints: bool = True,
    ) -> None:
        server = ServerSettings.model_validate(settings)
        self._identify()
        self._model = model
        self._scorer = (
            RemoteCertaintyScorer(
                model, model_setting=server.model, route_by_prompt=route_by_prompt
            )
            if model is not None
            else None
        )
        self._service = create_app(server, scorer=self._scorer)
        self._service.get("/v1/metrics/targets", include_in_schema=False)(self._metrics_targets)
        self._open_metrics(metrics_endpoints)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._service

    async def _metrics_targets(self) -> list[dict[str, object]]:
        """Every running replica's metrics endpoint, in Prometheus ``http_sd`` format."""
        handles = [serve.get_deployment_handle(self._deployment, self._app)]
        if self._model is not None:
            handles.append(self._model)
        answers = await asyncio.gather(*(_metrics_targets_of(h) for h in handles))
        return [t.as_sd(self._app) for answer in answers for t in answer]

    def readiness(self) -> dict[str, Any]:
        """Whether this replica would answer /readyz with 200, and its model."""
        scorer = self._scorer
        return {
            "ready": scorer is None or scorer.ready,
            "model": scorer.model_name if scorer is not None else None,
            "replica": self._replica,
            "node_id": self._node_id,
            "model_calls_resent": scorer.calls_resent if scorer is not None else 0,
        }

    async def __del__(self) -> None:
        self._close_metrics()
