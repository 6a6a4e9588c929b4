"""The certainty scorer of an ingress replica: the model deployment behind a handle.

It implements the :class:`~reward_server.certainty.scorer_protocol.Scorer` protocol
(``start``, ``stop``, ``score``, ``reload``, ``ready``, ``model_name``) as the local
:class:`~reward_server.certainty.CertaintyScorer` does, so the unchanged
:class:`~reward_server.service.RewardService` scores through it:

* ``score`` splits the items by prompt (:mod:`.routing`), sends one call per prompt with
  the prompt's hash as the routing key, and puts the results back in input order. A
  call that reached a replica which then died (or was removed) is sent again, in
  ``RESEND_ATTEMPTS`` attempts at most within the deadline, then fails with
  ``ScorerNotReady`` (503 with Retry-After, which the client retries): scoring is a pure
  function of the item, so a repeated call can change nothing but the time it takes.
* ``ready`` is the last probe of the model replicas (every ``PROBE_INTERVAL_S``): true
  while at least one answers that its model is loaded and warm.
* ``reload`` asks every model replica to load the directory, and repeats until every
  replica reports the new generation (a replica that started meanwhile is caught by the
  repeat). The probe loop also re-sends the newest reload to any replica behind it, so a
  replica started later (autoscaling, a restart) converges to the same weights.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ray.exceptions import RayActorError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)

from reward_server.certainty.scorer_protocol import Scorer
from reward_server.certainty.types import (
    CertaintyRequest,
    CertaintyResult,
    ScorerDeadlineExceeded,
    ScorerNotReady,
    ScorerOverloaded,
)
from reward_server.ray_serve.routing import indices_by_prompt_key
from reward_server.ray_serve.wire import ModelFailure, ModelState

# Under Serve's logger, so that the lines land in the replica's log file with Serve's own.
log = logging.getLogger(f"ray.serve.{__name__}")

# A replica that died with the call in flight, or one the router had already dropped.
_REPLICA_GONE = (RayActorError, ReplicaUnavailableError)
# How long past the caller's deadline to wait for the replica's own deadline answer
# before giving up on the call here.
_DEADLINE_GRACE_S = 1.0
# Constants rather than settings: a call is sent again only when its replica died under
# it, and the resends are bounded by the caller's deadline anyway; what a user tunes is
# the client's own retry policy, which retries the 503 that follows the last attempt.
# Exposing these too would only stack a second retry loop under the client's.
RESEND_ATTEMPTS = 3
# Pause before the second attempt, doubled before each later one: long enough for Serve's
# router to drop the dead replica, short against any deadline.
RESEND_BACKOFF_S = 0.25
# How often the model replicas are probed for readiness (and a reload re-sent to one
# behind); the ingress's /readyz is at most this stale.
PROBE_INTERVAL_S = 2.0
# Longest a reload may take to reach every model replica (loading a large model from
# disk on each); past it the reload answers 503.
RELOAD_TIMEOUT_S = 600.0


class RemoteCertaintyScorer(Scorer):
    """Scores through the ``CertaintyModel`` deployment; see the module docstring."""

    def __init__(
        self,
        handle: Any,
        *,
        model_setting: str,
        route_by_prompt: bool = True,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        # ``sleep`` is the pause between resends (tests count the pauses through it).
        self._handle = handle
        self._model_name = model_setting
        self._route_by_prompt = route_by_prompt
        self._sleep = sleep
        self._ready = False
        self._probe_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        # The newest reload this ingress has seen done: (generation, model_dir).
        self._newest: tuple[int, str | None] = (0, None)
        self._last_states: list[ModelState] = []
        # (replica, generation) pairs the convergence has already re-sent.
        self._pushed: set[tuple[str, int]] = set()
        # Calls sent again because their replica died or was removed under them.
        self.calls_resent = 0

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def model_name(self) -> str:
        return self._model_name

    async def start(self) -> None:
        """Wait until a model replica is ready, then keep probing in the background."""
        while not await self._probe():
            await asyncio.sleep(min(0.5, PROBE_INTERVAL_S))
        self._probe_task = asyncio.create_task(self._probe_loop(), name="model-probe")

    async def stop(self) -> None:
        self._ready = False
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.gather(self._probe_task, return_exceptions=True)
            self._probe_task = None

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                await self._probe()
                await self._converge()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next probe tries again; readiness already says it
                log.exception("probing the model replicas failed")

    async def _probe(self) -> bool:
        """Ask every model replica for its state; ready when at least one is ready."""
        try:
            states = await self._broadcast("state", timeout_s=10.0)
        except (ScorerNotReady, *_REPLICA_GONE) as exc:
            log.debug("model deployment not ready: %s", exc)
            states = []
        live = [s for s in states if isinstance(s, ModelState)]
        self._last_states = live
        ready = [s for s in live if s.ready]
        if ready:
            newest = max(ready, key=lambda s: s.generation)
            self._model_name = newest.model_name
            if newest.generation > self._newest[0]:
                self._newest = (newest.generation, newest.model_dir)
        self._ready = bool(ready)
        return self._ready

    async def _converge(self) -> None:
        """Re-send the newest reload to a replica that serves older weights (one started
        after it, or restarted), once per replica and generation: a replica that cannot
        load them keeps failing its own way, not in a loop."""
        generation, model_dir = self._newest
        behind = {s.replica for s in self._last_states if s.generation < generation}
        behind -= {replica for replica, g in self._pushed if g == generation}
        if model_dir is None or not behind:
            return
        self._pushed |= {(replica, generation) for replica in behind}
        async with self._reload_lock:
            log.info("model replicas %s are behind generation %d: reloading %s",
                     sorted(behind), generation, model_dir)
            await self._broadcast("reload", model_dir, generation, timeout_s=RELOAD_TIMEOUT_S)

    async def _broadcast(self, method: str, *args: Any, timeout_s: float) -> list[Any]:
        """``method`` on every running model replica: its answer, or the exception that
        replica raised (a replica that died meanwhile)."""
        try:
            response = self._handle.broadcast(method, *args)
            return await response.results_async(timeout_s=timeout_s, return_exceptions=True)
        except DeploymentUnavailableError as exc:
            raise ScorerNotReady(f"no model replica is running ({exc})") from None
        except TimeoutError:
            raise ScorerNotReady(
                f"the model replicas did not answer {method!r} within {timeout_s:g}s"
            ) from None

    # ------------------------------------------------------------------ scoring
    async def score(
        self, requests: Sequence[CertaintyRequest], deadline: float | None = None
    ) -> list[CertaintyResult]:
        """One result per request, in order; one model call per distinct prompt."""
        if not requests:
            return []
        groups = indices_by_prompt_key(requests)
        loop = asyncio.get_running_loop()
        # Each call starts in an empty context. Inside a Serve request, a handle call
        # takes the request's internal id from the context, and Serve's router finds a
        # waiting call by that id: sibling calls sharing it are never matched to the
        # replica chosen for them, and under the consistent-hash router (Ray 2.60) they
        # wait forever. A fresh context gives each call its own id.
        calls = [
            loop.create_task(
                self._score_group(key, [requests[i] for i in indices], deadline),
                context=contextvars.Context(),
            )
            for key, indices in groups.items()
        ]
        try:
            answers = await asyncio.gather(*calls)
        finally:
            for call in calls:  # one group failed: the request fails, stop the others
                call.cancel()
        results: list[CertaintyResult | None] = [None] * len(requests)
        for indices, answer in zip(groups.values(), answers, strict=True):
            for index, result in zip(indices, answer, strict=True):
                results[index] = result
        out = [r for r in results if r is not None]
        if len(out) != len(requests):  # an invariant: never zip a short result list
            raise RuntimeError("the model deployment lost items")
        return out

    async def _score_group(
        self, key: str | None, group: list[CertaintyRequest], deadline: float | None
    ) -> list[CertaintyResult]:
        handle = self._handle
        if key is not None and self._route_by_prompt:
            handle = handle.options(session_id=key)
        last: BaseException | None = None
        for attempt in range(RESEND_ATTEMPTS):
            if attempt:  # a pause between attempts, none after the last one
                self.calls_resent += 1
                pause = RESEND_BACKOFF_S * 2 ** (attempt - 1)
                if deadline is not None:  # never sleep past the deadline
                    pause = max(0.0, min(pause, deadline - time.monotonic()))
                await self._sleep(pause)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ScorerDeadlineExceeded("deadline passed before the model answered")
            try:
                # The deadline crosses processes (and machines) as seconds left, since
                # monotonic clocks are per machine.
                outcome = await asyncio.wait_for(
                    handle.score.remote(group, remaining, key),
                    None if remaining is None else remaining + _DEADLINE_GRACE_S,
                )
            except TimeoutError:
                raise ScorerDeadlineExceeded("deadline passed while the model scored") from None
            except BackPressureError as exc:
                raise ScorerOverloaded(str(exc), retry_after=exc.retry_after_s or 1.0) from None
            except DeploymentUnavailableError as exc:
                raise ScorerNotReady(f"the model deployment is unavailable: {exc}") from None
            except _REPLICA_GONE as exc:
                last = exc
                log.warning("model replica gone (attempt %d): %s", attempt + 1, exc)
                continue
            if isinstance(outcome, ModelFailure):
                raise outcome.as_error()
            if len(outcome) != len(group):
                raise RuntimeError(f"model returned {len(outcome)} results for {len(group)}")
            return list(outcome)
        raise ScorerNotReady(
            f"no model replica answered in {RESEND_ATTEMPTS} attempts (last: {last})"
        )

    # ------------------------------------------------------------------ reload
    async def reload(self, model_dir: str) -> None:
        """Load ``model_dir`` on every model replica (each checks it against its reload
        root first). Raises ValueError with the replica's reason when one refuses."""
        generation = time.time_ns()
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        async with self._reload_lock:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ScorerNotReady("model reload did not reach every replica in time")
                states = await self._broadcast(
                    "reload", model_dir, generation, timeout_s=remaining
                )
                failed = [s for s in states if isinstance(s, ModelState) and s.error]
                if failed:
                    raise ValueError(failed[0].error)
                lost = [s for s in states if not isinstance(s, ModelState)]
                if lost and not any(isinstance(s, ModelState) for s in states):
                    raise ScorerNotReady(f"no model replica could reload: {lost[0]}")
                current = await self._broadcast("state", timeout_s=30.0)
                live = [s for s in current if isinstance(s, ModelState)]
                if live and all(s.generation >= generation for s in live):
                    break
        self._newest = (generation, model_dir)
        self._last_states = live
        self._model_name = max(live, key=lambda s: s.generation).model_name
