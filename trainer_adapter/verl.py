"""verl adapter: a custom reward function calling the reward service.

Two entry points in this file (the config keys differ between verl releases; see
``examples/verl/README.md`` for the exact overrides each release was checked with):

* ``compute_score`` (``async def``, the default name) for verl's reward loop (the default
  since 0.7: ``naive`` / ``dapo`` / ``rate_limited`` managers). verl 0.7.1+ and 0.9:
  ``reward.custom_reward_function.path=<this file>``; verl 0.7.0:
  ``custom_reward_function.path=<this file>``. Concurrent calls on one event loop are
  coalesced into batched requests (up to ``SHOP_R1_REWARD_BATCH_MAX_ITEMS`` items or
  ``SHOP_R1_REWARD_BATCH_WAIT_MS`` milliseconds, whichever first), then fanned back out.
* ``compute_score_batch`` for the legacy ``batch`` reward manager, which only verl 0.7.0
  still runs (``reward_model.use_reward_loop=False reward_model.reward_manager=batch
  custom_reward_function.name=compute_score_batch``): called once per batch with
  ``data_sources=, solution_strs=, ground_truths=, extra_infos=``; one service call.

Every result is a dict with the same keys (:mod:`trainer_adapter._results`): ``score``
(the Shop-R1 reward the policy is trained on), ``score_normalized`` (0..1), ``format``,
``type``, ``attribute``, ``value``, ``format_ok``, ``self_certainty`` (0.0 when not
computed), ``self_certainty_missing`` and ``self_certainty_approximate``; verl puts the
keys besides ``score`` in ``reward_extra_info``.

The dataset row: ``reward_model.ground_truth`` is the shopper's action (a dict or JSON
string). verl does not pass the prompt to reward functions: put it in
``extra_info["prompt"]`` (chat messages, or templated text) so the service's
self-certainty is computed over prompt and completion; without it the value is computed
on the completion alone and flagged ``self_certainty_approximate`` = 1. To send the
trainer's own value, put it in ``extra_info["self_certainty"]`` and set
``SHOP_R1_SELF_CERTAINTY_SOURCE=provided``. A failure raises (after retries) rather than
returning 0. Configuration: ``SHOP_R1_*`` variables (see :mod:`trainer_adapter._settings`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from client import BadRequestError, FieldError, RewardResult, ScoreItem
from trainer_adapter._results import flat_result
from trainer_adapter._settings import AdapterSettings, async_client, sync_client

__all__ = ["compute_score", "compute_score_batch", "item_for"]


def item_for(
    solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None
) -> ScoreItem:
    """One score item from verl's per-sample arguments (prompt from ``extra_info``)."""
    extra = extra_info or {}
    certainty = extra.get("self_certainty")
    return ScoreItem(
        completion=solution_str,
        ground_truth=_plain(ground_truth),
        prompt=_prompt(extra.get("prompt")),
        self_certainty=float(certainty) if certainty is not None else None,
    )


def _prompt(value: Any) -> str | list[dict[str, str]] | None:
    """Text, or chat messages from any sequence (parquet may give numpy object arrays)."""
    if value is None or isinstance(value, str):
        return value or None
    messages = [dict(message) for message in value]
    return messages or None


def _plain(value: Any) -> Any:
    """A ground truth as JSON-ready data (parquet may give numpy scalars inside dicts)."""
    if isinstance(value, Mapping):
        return {str(k): v if v is None or isinstance(v, str) else str(v) for k, v in value.items()}
    return value


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """verl 0.7.0 legacy ``batch`` reward manager entry: one dict per sample, in order."""
    count = len(solution_strs)
    extra_infos = list(extra_infos) if extra_infos is not None else [None] * count
    if not len(data_sources) == count == len(ground_truths) == len(extra_infos):
        raise ValueError(
            f"verl passed {len(data_sources)} data_sources, {count} solution_strs, "
            f"{len(ground_truths)} ground_truths and {len(extra_infos)} extra_infos"
        )
    if not count:
        return []
    settings = AdapterSettings.from_env()
    items = [
        item_for(solution, truth, extra)
        for solution, truth, extra in zip(solution_strs, ground_truths, extra_infos, strict=True)
    ]
    batch = sync_client(settings).score(items, **settings.score_kwargs())
    return [flat_result(result) for result in batch.results]


class _Coalescer:
    """Collects concurrent per-sample calls on one loop into batched service calls.

    Not one of the server's batchers, on purpose: those (the scorer's token-budget queue,
    the Ray model replica's per-prompt gathering) live in ``reward_server`` with torch and
    Ray, which an adapter may not import (it runs in the trainer's environment with the
    client only). It also does what they need not: a 422 fails only the samples it names
    and the rest are sent again, so one bad row never costs its neighbours their reward.
    """

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.pending: list[tuple[ScoreItem, asyncio.Future[RewardResult]]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: ScoreItem) -> RewardResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RewardResult] = loop.create_future()
        self.pending.append((item, future))
        if len(self.pending) >= self.settings.reward_batch_max_items:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.settings.reward_batch_wait_ms / 1000, self.flush)
        return await future

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[tuple[ScoreItem, asyncio.Future[RewardResult]]]) -> None:
        live = [(item, future) for item, future in batch if not future.done()]
        while live:
            try:
                scored = await async_client(self.settings).score(
                    [item for item, _ in live], **self.settings.score_kwargs()
                )
            except BadRequestError as exc:
                # Bad samples must not fail their neighbours: fail those the server named
                # (every invalid one is listed in one answer), resend the rest.
                bad = _errors_by_item(exc, len(live))
                if not bad:
                    return _fail(live, exc)
                for index, errors in bad.items():
                    _fail([live[index]], _sample_error(exc, errors))
                live = [entry for i, entry in enumerate(live) if i not in bad]
                continue
            except BaseException as exc:  # cancellation included: never leave a caller hanging
                _fail(live, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, future), result in zip(live, scored.results, strict=True):
                if not future.done():
                    future.set_result(result)
            return


def _errors_by_item(exc: BadRequestError, count: int) -> dict[int, list[FieldError]]:
    """The invalid fields a 422 names, by item index (``items[3].ground_truth`` is item 3's
    ``ground_truth``); empty when one names anything else (the request as a whole, or an
    index not in the batch), which fails every item."""
    named = list(exc.errors) or [FieldError(exc.param or "", exc.message)]
    by_item: dict[int, list[FieldError]] = {}
    for error in named:
        entry = error.entry()
        if entry is None or entry[0] >= count:
            return {}
        index, field = entry
        by_item.setdefault(index, []).append(FieldError(field or "item", error.message))
    return by_item


def _sample_error(exc: BadRequestError, errors: list[FieldError]) -> BadRequestError:
    """One sample's own refusal: its fields, named as the sample's (``ground_truth.type``)."""
    first = errors[0]
    return BadRequestError(
        f"the reward service refused this sample ({exc.status}, field {first.param}): "
        f"{first.message}. Fix the input; retrying the same sample cannot succeed.",
        status=exc.status, param=first.param, kind=exc.kind, url=exc.url,
        attempts=exc.attempts, errors=tuple(errors),
    )


def _fail(
    entries: list[tuple[ScoreItem, asyncio.Future[RewardResult]]], exc: BaseException
) -> None:
    for _, future in entries:
        if not future.done():
            future.set_exception(exc)


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Coalescer] = (
    weakref.WeakKeyDictionary()
)


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl per-sample reward (``async``): coalesced with concurrent calls into one request."""
    settings = AdapterSettings.from_env()
    loop = asyncio.get_running_loop()
    coalescer = _coalescers.get(loop)
    if coalescer is None or coalescer.settings != settings:
        if coalescer is not None:
            coalescer.flush()
        coalescer = _coalescers[loop] = _Coalescer(settings)
    result = await coalescer.submit(item_for(solution_str, ground_truth, extra_info))
    return flat_result(result)
