"""The scorer's queue: it holds tokenised items and forms batches; nothing else.

A batch is formed FIFO under two budgets, ``max_items_per_batch`` items and
``max_batch_tokens`` forward tokens, where an item costs its completion's forward tokens
plus its prompt's tokens, and a prompt already in the batch is counted once (a GRPO group
split over several requests still shares one prompt encoding). After the first item that
does not fit, only items whose prompt is already in the batch still join (they cost their
completion only). An item whose caller went away (its future is done) is dropped; an item
whose deadline has passed fails with :class:`ScorerDeadlineExceeded`. The first item of a
batch always fits, whatever its size (it is capped by the model context when encoded).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from reward_server.certainty.encoding import EncodedItem
from reward_server.certainty.types import (
    CertaintyRequest,
    CertaintyResult,
    ScorerDeadlineExceeded,
)


@dataclass(eq=False, slots=True)
class QueuedItem:
    """One tokenised request waiting for (or in) a batch."""

    request: CertaintyRequest
    encoded: EncodedItem
    generation: int  # the model generation it was tokenised for
    future: asyncio.Future[CertaintyResult]
    enqueued: float
    deadline: float | None
    prompt_hash: int
    in_flight: bool = False

    @property
    def waiting(self) -> bool:
        return not self.future.done()

    def cost(self, prompt_counted: bool) -> int:
        """Forward tokens this item adds to a batch."""
        prompt = 0 if prompt_counted else len(self.encoded.prompt_ids)
        return self.encoded.forward_tokens + prompt


class BatchQueue:
    """FIFO of :class:`QueuedItem` that hands out batches under the two budgets."""

    def __init__(self, max_batch_tokens: int, max_items_per_batch: int) -> None:
        if max_batch_tokens <= 0 or max_items_per_batch <= 0:
            raise ValueError("batch bounds must be positive")
        self.max_batch_tokens = max_batch_tokens
        self.max_items_per_batch = max_items_per_batch
        self._items: deque[QueuedItem] = deque()

    def __len__(self) -> int:
        """Items still waiting (cancelled ones not counted)."""
        return sum(1 for e in self._items if e.waiting)

    def push(self, items: Iterable[QueuedItem]) -> None:
        self._items.extend(items)

    def drop(self, items: Iterable[QueuedItem]) -> None:
        """Remove ``items`` (their caller is gone), cancelling their futures."""
        gone = set()
        for e in items:
            if not e.future.done():
                e.future.cancel()
            gone.add(id(e))
        self._items = deque(e for e in self._items if id(e) not in gone)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiting item with ``exc`` and empty the queue."""
        for e in self._items:
            if e.waiting:
                e.future.set_exception(exc)
        self._items.clear()

    def oldest_enqueued(self) -> float | None:
        """When the oldest waiting item was queued; None (and the queue emptied of
        cancelled items) when nothing waits."""
        times = [e.enqueued for e in self._items if e.waiting]
        if not times:
            self._items.clear()
            return None
        return min(times)

    def has_full_batch(self) -> bool:
        """Whether the waiting items already reach a budget (no reason to wait longer)."""
        items = tokens = 0
        seen: set[int] = set()
        for e in self._items:
            if not e.waiting:
                continue
            items += 1
            tokens += e.cost(e.prompt_hash in seen)
            seen.add(e.prompt_hash)
            if items >= self.max_items_per_batch or tokens >= self.max_batch_tokens:
                return True
        return False

    def take_batch(self, now: float) -> list[QueuedItem]:
        """The next batch (marked in flight); expired items fail, cancelled ones drop."""
        batch: list[QueuedItem] = []
        keep: deque[QueuedItem] = deque()
        prompts: set[int] = set()
        tokens = 0
        closed = False
        for e in self._items:
            if not e.waiting:
                continue  # the caller went away
            if e.deadline is not None and now >= e.deadline:
                e.future.set_exception(ScorerDeadlineExceeded("deadline passed while queued"))
                continue
            shared = e.prompt_hash in prompts
            cost = e.cost(shared)
            fits = len(batch) < self.max_items_per_batch and (
                not batch or tokens + cost <= self.max_batch_tokens
            )
            if fits and (not closed or shared):
                batch.append(e)
                prompts.add(e.prompt_hash)
                tokens += cost
                e.in_flight = True
            else:
                closed = True
                keep.append(e)
        self._items = keep
        return batch
