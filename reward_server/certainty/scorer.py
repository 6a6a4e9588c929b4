"""The async scorer: lifecycle, reload and executors around a :class:`BatchQueue` and a
synchronous :class:`ScoringBackend`.

One batch-loop task owns the queue; one worker thread runs the model, another tokenises.
Items from concurrent :meth:`CertaintyScorer.score` calls are coalesced into a batch when
the oldest queued item has waited ``max_wait_ms`` or the queue already holds a full batch
(the batch rules are :mod:`~reward_server.certainty.batch_queue`'s).

A call with more items than ``max_queue_items`` raises :class:`ScorerRequestTooLarge` (it
can never fit); a queue too full for a call answers :class:`ScorerOverloaded` at once; an
item whose caller went away (cancelled) is dropped before it reaches the model; an item
still queued when its deadline passes fails with :class:`ScorerDeadlineExceeded`. This
module imports no torch: the backend is loaded lazily in the worker thread by ``start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from reward_server.certainty.backend import Loader, ScoringBackend
from reward_server.certainty.batch_queue import BatchQueue, QueuedItem
from reward_server.certainty.encoding import EncodedItem
from reward_server.certainty.model_loading import check_reload_dir
from reward_server.certainty.scorer_protocol import Scorer
from reward_server.certainty.types import (
    BatchStats,
    CertaintyRequest,
    CertaintyResult,
    ScorerDeadlineExceeded,
    ScorerNotReady,
    ScorerOverloaded,
    ScorerRequestTooLarge,
)
from reward_server.config import ScorerSettings

log = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """Telemetry hook; both methods are called on the event loop and must not block."""

    def on_batch(self, stats: BatchStats) -> None: ...

    def on_queue_depth(self, depth: int) -> None: ...


@dataclass(slots=True)
class ItemRate:
    """Exponentially weighted average of items scored per second (weight ``alpha`` on the
    newest batch), to suggest a Retry-After when the queue is full."""

    items_per_s: float = 0.0
    alpha: float = 0.3

    def update(self, items: int, seconds: float) -> None:
        if seconds <= 0:
            return
        rate = items / seconds
        if self.items_per_s == 0:
            self.items_per_s = rate
        else:
            self.items_per_s = self.alpha * rate + (1 - self.alpha) * self.items_per_s


class CertaintyScorer(Scorer):
    """Async self-certainty scorer; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        model: str,
        loader: Loader,
        settings: ScorerSettings | None = None,
        observer: BatchObserver | None = None,
        reload_root: str | None = None,
        **values: float,
    ) -> None:
        """``settings`` (default :class:`ScorerSettings`'s) with ``values`` (its field
        names) replaced; a value out of its bounds raises ValueError."""
        limits = (settings or ScorerSettings()).with_values(**values)
        self._model_setting = model
        self._loader = loader
        self._queue = BatchQueue(limits.max_batch_tokens, limits.max_items_per_batch)
        self.max_queue_items = limits.max_queue_items
        self.max_wait_s = limits.max_wait_ms / 1000.0
        self._observer = observer
        self._reload_root = reload_root
        self._backend: ScoringBackend | None = None
        self._generation = 0
        self._tokenising = 0  # items reserved in the queue bound while being tokenised
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._model_exec: ThreadPoolExecutor | None = None
        self._tok_exec: ThreadPoolExecutor | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._batch_lock: asyncio.Lock | None = None  # held while a batch runs
        self._retiring: set[asyncio.Task[None]] = set()  # replaced backends being closed
        self._ready = False
        self._stopping = False
        self._rate = ItemRate()

    # ------------------------------------------------------------------ properties
    @property
    def max_batch_tokens(self) -> int:
        return self._queue.max_batch_tokens

    @property
    def max_items_per_batch(self) -> int:
        return self._queue.max_items_per_batch

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def model_name(self) -> str:
        return self._backend.model_name if self._backend is not None else self._model_setting

    @property
    def vocab_size(self) -> int:
        return int(self._backend.vocab_size) if self._backend is not None else 0

    @property
    def queue_depth(self) -> int:
        """Items waiting (queued or being tokenised), not counting the running batch."""
        return self._tokenising + len(self._queue)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Load the model in the worker thread and warm it up; then ``ready`` is True.

        Raises :class:`ModelLoadError` when the model cannot be loaded.
        """
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        self._model_exec = ThreadPoolExecutor(1, thread_name_prefix="certainty-model")
        self._tok_exec = ThreadPoolExecutor(1, thread_name_prefix="certainty-tokenize")
        self._wakeup = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._batch_lock = asyncio.Lock()
        try:
            self._backend = await loop.run_in_executor(
                self._model_exec, self._load, self._model_setting
            )
        except BaseException:
            self._shutdown_executors()
            raise
        self._stopping = False
        self._loop_task = asyncio.create_task(self._batch_loop(), name="certainty-batcher")
        self._ready = True

    def _load(self, model: str) -> ScoringBackend:
        backend = self._loader(model)
        backend.warmup()
        return backend

    async def stop(self) -> None:
        """Stop: queued items fail with ScorerNotReady, the running batch finishes."""
        self._ready = False
        self._stopping = True
        self._queue.fail_all(ScorerNotReady("the scorer is stopping"))
        if self._wakeup is not None:
            self._wakeup.set()
        if self._loop_task is not None:
            # The loop exits after its current batch; waiting lets in-flight work finish.
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._retiring:
            await asyncio.gather(*self._retiring)
        self._shutdown_executors()
        self._report_depth()
        if self._backend is not None:
            # A backend with engine processes (vLLM) or device memory would otherwise keep
            # them until interpreter exit; no batch runs any more.
            await asyncio.to_thread(self._backend.close)

    def _shutdown_executors(self) -> None:
        for ex in (self._model_exec, self._tok_exec):
            if ex is not None:
                # Not cancel_futures: a caller awaiting its tokenisation then gets
                # ScorerNotReady rather than a CancelledError it did not ask for.
                ex.shutdown(wait=False)
        self._model_exec = self._tok_exec = None

    async def reload(self, model_dir: str) -> None:
        """Swap in weights from ``model_dir`` without a restart.

        The new model loads and warms up in a separate thread while scoring goes on; the
        swap happens between batches, so in-flight work finishes on the old weights and
        items tokenised for the old model are re-tokenised for the new one. The old backend
        is closed (its memory, or a vLLM engine's processes, handed back) once the batch
        running on it has finished. With a ``reload_root`` only directories under it
        (symlinks resolved) are accepted.
        """
        if not self._ready:
            raise ScorerNotReady("the scorer is not started")
        path = check_reload_dir(model_dir, self._reload_root)
        assert self._reload_lock is not None
        async with self._reload_lock:
            backend = await asyncio.to_thread(self._load, str(path))
            if self._stopping or not self._ready:
                await asyncio.to_thread(backend.close)
                raise ScorerNotReady("the scorer stopped while the new model was loading")
            replaced, self._backend = self._backend, backend
            self._generation += 1
            if replaced is not None:
                task = asyncio.create_task(self._retire(replaced), name="certainty-retire")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    async def _retire(self, backend: ScoringBackend) -> None:
        """Close a replaced backend after the batch that may still be running on it."""
        assert self._batch_lock is not None
        async with self._batch_lock:  # a batch reads the backend once, under this lock
            pass
        try:
            await asyncio.to_thread(backend.close)
        except Exception:  # the reload itself succeeded; the old model just lingers
            log.exception("closing the replaced model failed")

    # ------------------------------------------------------------------ scoring
    async def score(
        self, requests: Sequence[CertaintyRequest], deadline: float | None = None
    ) -> list[CertaintyResult]:
        """Score ``requests``; one result per request, in order.

        ``deadline`` is an absolute ``time.monotonic()``. Raises
        :class:`ScorerRequestTooLarge` when the call alone exceeds ``max_queue_items``,
        :class:`ScorerOverloaded` at once when the queue cannot take all items now,
        :class:`ScorerNotReady` before start or during stop, :class:`ScorerDeadlineExceeded`
        when the deadline passes while items are still queued. Per-item problems are
        results with ``value=None``.
        """
        if not self._ready:
            raise ScorerNotReady("the certainty model is not loaded")
        n = len(requests)
        if n == 0:
            return []
        if n > self.max_queue_items:
            raise ScorerRequestTooLarge(
                f"{n} items in one call; the certainty queue holds at most "
                f"{self.max_queue_items}: split the request",
                limit=self.max_queue_items,
            )
        if self.queue_depth + n > self.max_queue_items:
            raise ScorerOverloaded(
                f"certainty queue full ({self.queue_depth} of {self.max_queue_items} items)",
                retry_after=self._retry_after(),
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise ScorerDeadlineExceeded("deadline passed before the items were queued")
        loop = asyncio.get_running_loop()
        backend, generation = self._backend, self._generation
        assert backend is not None
        self._tokenising += n
        self._report_depth()
        try:
            # Tokenising a long prompt or a chat template takes milliseconds: off the loop.
            encoded = await loop.run_in_executor(
                self._tok_exec, _encode_all, backend, list(requests)
            )
        finally:
            self._tokenising -= n
        if not self._ready:
            raise ScorerNotReady("the scorer is stopping")
        now = time.monotonic()
        results: list[CertaintyResult | None] = [None] * n
        queued: list[tuple[int, QueuedItem]] = []
        for i, (req, enc) in enumerate(zip(requests, encoded, strict=True)):
            if isinstance(enc, CertaintyResult):
                results[i] = enc
                continue
            item = QueuedItem(
                request=req,
                encoded=enc,
                generation=generation,
                future=loop.create_future(),
                enqueued=now,
                deadline=deadline,
                prompt_hash=hash(enc.prompt_ids),
            )
            queued.append((i, item))
        self._queue.push(item for _, item in queued)
        self._report_depth()
        if queued:
            assert self._wakeup is not None
            self._wakeup.set()
            try:
                await self._wait([item for _, item in queued], deadline)
            except BaseException:
                self._queue.drop(item for _, item in queued)
                self._report_depth()
                raise
        for i, item in queued:
            results[i] = item.future.result()
        out = [r for r in results if r is not None]
        if len(out) != n:  # an invariant: never zip a short result list
            raise RuntimeError("certainty scorer lost items")
        return out

    async def _wait(self, items: list[QueuedItem], deadline: float | None) -> None:
        futures = [e.future for e in items]
        if deadline is not None:
            _, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            if pending:
                # A batch already in the model thread runs on (its late results are
                # dropped), but the caller gets its answer at the deadline, not after a hang.
                where = "queued" if any(not e.in_flight for e in items) else "being scored"
                raise ScorerDeadlineExceeded(f"deadline passed while items were {where}")
        await asyncio.wait(futures)
        for f in futures:
            error = f.exception()
            if error is not None:
                raise error

    def _retry_after(self) -> float:
        rate = self._rate.items_per_s
        if rate <= 0:
            return 1.0
        return float(min(30.0, max(0.1, self.queue_depth / rate)))

    def _report_depth(self) -> None:
        if self._observer is not None:
            try:
                self._observer.on_queue_depth(self.queue_depth)
            except Exception:  # telemetry must never break scoring
                log.exception("certainty observer on_queue_depth failed")

    # ------------------------------------------------------------------ batch loop
    async def _batch_loop(self) -> None:
        assert self._wakeup is not None and self._batch_lock is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            oldest = self._queue.oldest_enqueued()
            if oldest is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Wait bound: give concurrent callers up to max_wait after the oldest item to
            # join the batch, unless a full batch is already queued.
            while not self._stopping:
                remaining = oldest + self.max_wait_s - time.monotonic()
                if remaining <= 0 or self._queue.has_full_batch():
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            if self._stopping:
                break
            batch = self._queue.take_batch(time.monotonic())
            self._report_depth()
            if not batch:
                continue
            try:
                async with self._batch_lock:
                    await self._run_batch(loop, batch)
            except Exception as exc:  # a bug or a dead executor: fail this batch, keep serving
                log.exception("certainty batch failed")
                for e in batch:
                    if e.waiting:
                        e.future.set_result(
                            CertaintyResult(value=None, reason="backend_error", detail=f"{exc}")
                        )

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[QueuedItem]) -> None:
        backend, generation = self._backend, self._generation
        assert backend is not None
        stale = [e for e in batch if e.generation != generation]
        if stale:
            # A reload happened after these were tokenised: the new tokenizer may differ.
            fresh = await loop.run_in_executor(
                self._tok_exec, _encode_all, backend, [e.request for e in stale]
            )
            for e, enc in zip(stale, fresh, strict=True):
                e.generation = generation
                if isinstance(enc, CertaintyResult):  # e.g. too long for the new context
                    if e.waiting:
                        e.future.set_result(enc)
                else:
                    e.encoded = enc
            batch = [e for e in batch if e.waiting]
            if not batch:
                return
        start = time.monotonic()
        results, stats = await loop.run_in_executor(
            self._model_exec, backend.score_encoded, [e.encoded for e in batch]
        )
        if len(results) != len(batch):
            raise RuntimeError(f"backend returned {len(results)} results for {len(batch)} items")
        queue_max = 0.0
        for e, r in zip(batch, results, strict=True):
            r.queue_seconds = max(0.0, start - e.enqueued)
            queue_max = max(queue_max, r.queue_seconds)
            if e.waiting:  # a cancelled caller's result is dropped
                e.future.set_result(r)
        self._rate.update(len(batch), stats.forward_seconds)
        stats.extra["queue_seconds_max"] = queue_max
        if self._observer is not None:
            try:
                self._observer.on_batch(stats)
            except Exception:
                log.exception("certainty observer on_batch failed")


def _encode_all(
    backend: ScoringBackend, requests: list[CertaintyRequest]
) -> list[EncodedItem | CertaintyResult]:
    return [backend.encode(r) for r in requests]


__all__ = ["BatchObserver", "CertaintyScorer", "ItemRate"]
