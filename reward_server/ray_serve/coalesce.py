"""Calls that share a routing key, held for a short window and scored as one.

A trainer that posts one sample per request sends a GRPO group's members as separate
calls, a few milliseconds apart. The scorer's micro-batcher shares a prompt encoding
only among items queued together; a member that arrives just after a batch started would
have its prompt encoded a second time. A model replica therefore holds the first call of
a key for ``window_s`` and submits every call of that key that arrived meanwhile as one
scorer call (the scorer puts one call's items into one batch). The window costs each
keyed call at most ``window_s`` of latency; a key that gathers ``max_items`` goes at once.

Why not Serve's ``@serve.batch``: it has one window for every key, opened by a batch's
first call, and runs one batch at a time, so a group's members that arrive while a batch
is scored land in later batches, each with its own prompt encoding; and a caller cannot
stop waiting at its own deadline. Measured by ``bench/bench_serve_features.py`` (a), in a
real replica on the embedded model (CPU): 8 prompts x 4 samples sent one per call over 3 s
cost 12.5 prompt encodings through ``@serve.batch`` against 9 through this coalescer (8x8
within 0.2 s: 11 against 9; the ideal is 8).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

Send = Callable[[list[Item], float | None], Awaitable[Sequence[Result]]]


@dataclass
class _Gathering(Generic[Item, Result]):
    items: list[Item] = field(default_factory=list)
    # (start, end) of each caller's items, and the future its results go to.
    slices: list[tuple[int, int, asyncio.Future[list[Result]]]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class KeyedCoalescer(Generic[Item, Result]):
    """``submit(key, items, deadline)`` -> that caller's results, in order.

    ``send(items, deadline)`` scores one gathered list; its deadline is the latest of the
    callers' (None if any caller has none), and each caller still waits only until its
    own deadline. An exception from ``send`` reaches every caller of that gathering.
    """

    def __init__(self, send: Send, window_s: float, max_items: int) -> None:
        if window_s < 0 or max_items < 1:
            raise ValueError("window_s must be >= 0 and max_items >= 1")
        self._send = send
        self._window_s = window_s
        self._max_items = max_items
        self._open: dict[str, _Gathering[Item, Result]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: str, items: list[Item], deadline: float | None) -> list[Result]:
        loop = asyncio.get_running_loop()
        gathering = self._open.get(key)
        if gathering is None:
            gathering = self._open[key] = _Gathering()
            gathering.timer = loop.call_later(self._window_s, self._flush, key)
        future: asyncio.Future[list[Result]] = loop.create_future()
        future.add_done_callback(_retrieve)
        start = len(gathering.items)
        gathering.items.extend(items)
        gathering.slices.append((start, len(gathering.items), future))
        gathering.deadlines.append(deadline)
        if len(gathering.items) >= self._max_items:
            self._flush(key)
        if deadline is None:
            return await future
        # shield: one caller giving up must not cancel the call its peers wait on.
        return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))

    def _flush(self, key: str) -> None:
        gathering = self._open.pop(key, None)
        if gathering is None:
            return
        if gathering.timer is not None:
            gathering.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(gathering))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, gathering: _Gathering[Item, Result]) -> None:
        known = [d for d in gathering.deadlines if d is not None]
        deadline = max(known) if len(known) == len(gathering.deadlines) else None
        try:
            results = list(await self._send(gathering.items, deadline))
            if len(results) != len(gathering.items):
                raise RuntimeError(f"{len(results)} results for {len(gathering.items)} items")
        except BaseException as exc:
            for _, _, future in gathering.slices:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for start, end, future in gathering.slices:
            if not future.done():
                future.set_result(results[start:end])


def _retrieve(future: asyncio.Future) -> None:
    """Mark a failure as seen: a caller that gave up (its deadline) never awaits it."""
    if not future.cancelled():
        future.exception()
