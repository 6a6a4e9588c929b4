"""The async scorer: coalescing, overload, cancellation, deadlines, stop and reload."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from certainty_helpers import PROMPT, reference_value, shop_request

from reward_server.certainty import (
    CertaintyScorer,
    ModelLoadError,
    ScorerDeadlineExceeded,
    ScorerNotReady,
    ScorerOverloaded,
    build_scorer,
)
from reward_server.certainty.transformers_backend import TransformersBackend


class Gated:
    """Wraps a backend; score_encoded blocks until ``gate`` is set and records batch sizes."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_encoded(self, items):
        self.batches.append(len(items))
        self.entered.set()
        assert self.gate.wait(30)
        return self.inner.score_encoded(items)


class Recorder:
    def __init__(self, fail: bool = False):
        self.batches = []
        self.depths = []
        self.fail = fail

    def on_batch(self, stats):
        self.batches.append(stats)
        if self.fail:
            raise RuntimeError("telemetry bug")

    def on_queue_depth(self, depth):
        self.depths.append(depth)


@pytest.fixture
def gated(tiny_model, tiny_tokenizer):
    return Gated(TransformersBackend.from_model(tiny_model, tiny_tokenizer, name="tiny"))


def make_scorer(backend, **kw) -> CertaintyScorer:
    return build_scorer(model="tiny", loader=lambda _model: backend, **kw)


async def start_with_model_busy(gated, **kw):
    """A started scorer whose model thread is held inside one item's batch (``gated``'s
    gate is closed), so further items queue; returns the scorer and that item's task."""
    scorer = make_scorer(gated, **kw)
    await scorer.start()
    gated.gate.clear()
    first = asyncio.create_task(scorer.score([shop_request(prompt_text=PROMPT)]))
    await asyncio.to_thread(gated.entered.wait, 10)
    return scorer, first


async def wait_until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def test_not_ready_before_start(gated):
    scorer = make_scorer(gated)
    with pytest.raises(ScorerNotReady):
        await scorer.score([shop_request()])


async def test_coalesces_concurrent_calls_and_shares_prompts(gated, tiny_backend):
    rec = Recorder()
    scorer = make_scorer(gated, max_wait_ms=200, observer=rec)
    await scorer.start()
    assert scorer.ready and scorer.model_name == "tiny" and scorer.vocab_size > 0
    reqs = [
        shop_request(f"I compare offer number {i} before I buy.", prompt_text=PROMPT)
        for i in range(8)
    ]
    results = await asyncio.gather(*(scorer.score([r]) for r in reqs))
    assert gated.batches == [8]  # eight calls, one batch
    assert rec.batches[-1].items == 8 and rec.batches[-1].extra["groups"] == 1.0
    for req, [res] in zip(reqs, results, strict=True):
        assert res.value == pytest.approx(reference_value(tiny_backend, req), rel=1e-4)
        assert res.forward_seconds > 0 and res.queue_seconds >= 0
    assert rec.depths and rec.depths[-1] == 0
    await scorer.stop()
    assert not scorer.ready


async def test_budgets_split_batches_and_keep_order(gated):
    scorer = make_scorer(gated, max_wait_ms=100, max_items_per_batch=3)
    await scorer.start()
    reqs = [
        shop_request(f"Option {i} looks fine to me.", prompt_text=PROMPT + str(i % 2))
        for i in range(8)
    ]
    many = await scorer.score(reqs)
    alone = [(await scorer.score([r]))[0] for r in reqs]
    assert max(gated.batches[:3]) <= 3 and sum(gated.batches[:3]) == 8
    for m, a in zip(many, alone, strict=True):
        assert m.value == pytest.approx(a.value, rel=1e-4)
    await scorer.stop()


async def test_per_item_failures_come_back_in_order(gated):
    scorer = make_scorer(gated, max_wait_ms=0)
    await scorer.start()
    good = shop_request(prompt_text=PROMPT)
    empty = shop_request(prompt_text=PROMPT)
    empty = type(empty)(empty.completion_text, (3, 3), prompt_text=PROMPT)
    long = shop_request(prompt_text="word " * 400)
    out = await scorer.score([empty, good, long])
    assert [r.reason for r in out] == ["empty_span", None, "too_long"]
    await scorer.stop()


async def test_overloaded_at_once_when_full(gated):
    scorer, first = await start_with_model_busy(gated, max_queue_items=4, max_wait_ms=0)
    queued = asyncio.create_task(scorer.score([shop_request(prompt_text=PROMPT)] * 3))
    await wait_until(lambda: scorer.queue_depth == 3)
    t0 = time.monotonic()
    with pytest.raises(ScorerOverloaded) as info:
        await scorer.score([shop_request()] * 2)
    assert time.monotonic() - t0 < 0.5 and info.value.retry_after > 0
    gated.gate.set()
    assert len(await queued) == 3 and (await first)[0].value is not None
    await scorer.stop()


async def test_cancelled_caller_work_is_dropped(gated):
    scorer, first = await start_with_model_busy(gated, max_wait_ms=0)
    doomed = asyncio.create_task(scorer.score([shop_request(prompt_text=PROMPT)] * 5))
    await wait_until(lambda: scorer.queue_depth == 5)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert scorer.queue_depth == 0
    gated.gate.set()
    await first
    after = await scorer.score([shop_request(prompt_text=PROMPT)])
    assert after[0].value is not None
    assert gated.batches == [1, 1]  # the cancelled five never reached the model
    await scorer.stop()


async def test_deadline_passed_while_queued(gated):
    scorer, first = await start_with_model_busy(gated, max_wait_ms=0)
    t0 = time.monotonic()
    with pytest.raises(ScorerDeadlineExceeded):
        await scorer.score([shop_request(prompt_text=PROMPT)], deadline=time.monotonic() + 0.1)
    assert time.monotonic() - t0 < 2.0
    assert scorer.queue_depth == 0
    with pytest.raises(ScorerDeadlineExceeded):
        await scorer.score([shop_request()], deadline=time.monotonic() - 1)
    gated.gate.set()
    await first
    await scorer.stop()


async def test_stop_fails_queued_and_finishes_in_flight(gated):
    scorer, first = await start_with_model_busy(gated, max_wait_ms=0)
    queued = asyncio.create_task(scorer.score([shop_request(prompt_text=PROMPT)]))
    await wait_until(lambda: scorer.queue_depth == 1)
    stopping = asyncio.create_task(scorer.stop())
    with pytest.raises(ScorerNotReady):
        await queued
    gated.gate.set()
    await stopping
    assert (await first)[0].value is not None
    assert not scorer.ready


async def test_observer_errors_do_not_break_scoring(gated):
    scorer = make_scorer(gated, max_wait_ms=0, observer=Recorder(fail=True))
    await scorer.start()
    assert (await scorer.score([shop_request()]))[0].value is not None
    await scorer.stop()


async def test_reload_swaps_weights_and_checks_the_root(tiny_model_dirs, tmp_path):
    root, (dir1, dir2) = tiny_model_dirs
    backends: list[Gated] = []

    def loader(model: str):
        backends.append(Gated(TransformersBackend.from_pretrained(model, device="cpu")))
        return backends[-1]

    ref1 = TransformersBackend.from_pretrained(str(dir1), device="cpu")
    ref2 = TransformersBackend.from_pretrained(str(dir2), device="cpu")
    req = shop_request(prompt_text=PROMPT)
    want1, want2 = reference_value(ref1, req), reference_value(ref2, req)
    assert abs(want1 - want2) > 1e-3 * abs(want1)

    scorer = build_scorer(model=str(dir1), max_wait_ms=0, reload_root=str(root), loader=loader)
    await scorer.start()
    assert scorer.model_name == "tiny-1"
    assert (await scorer.score([req]))[0].value == pytest.approx(want1, rel=1e-4)

    # In-flight work finishes on the old weights; work tokenised for the old model but
    # batched after the swap is tokenised again and scored by the new one, as is later work.
    backends[0].gate.clear()
    backends[0].entered.clear()
    inflight = asyncio.create_task(scorer.score([req]))
    await asyncio.to_thread(backends[0].entered.wait, 10)
    queued = asyncio.create_task(scorer.score([req]))
    await wait_until(lambda: scorer.queue_depth == 1)
    await scorer.reload(str(dir2))
    assert scorer.model_name == "tiny-2"
    # The replaced model is closed, but only once the batch running on it is done.
    await asyncio.sleep(0.05)
    assert backends[0].inner.model is not None
    backends[0].gate.set()
    assert (await inflight)[0].value == pytest.approx(want1, rel=1e-4)
    assert (await queued)[0].value == pytest.approx(want2, rel=1e-4)
    assert backends[0].batches == [1, 1] and backends[1].batches == [1]
    await wait_until(lambda: backends[0].inner.model is None)
    assert backends[1].inner.model is not None
    assert (await scorer.score([req]))[0].value == pytest.approx(want2, rel=1e-4)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = root / "escape"
    os.symlink(outside, link)
    for bad in (str(outside), str(root / ".." / "elsewhere"), str(link), str(root / "missing")):
        with pytest.raises(ModelLoadError):
            await scorer.reload(bad)
    assert scorer.model_name == "tiny-2"  # a refused reload keeps the current model
    await scorer.stop()


async def test_a_reload_that_ends_after_stop_closes_its_model(tiny_model_dirs):
    """stop() during a reload's load: the new model is closed, not left loaded unowned."""
    root, (dir1, dir2) = tiny_model_dirs
    loading, release = threading.Event(), threading.Event()
    loaded: list[TransformersBackend] = []

    def loader(model: str):
        if loaded:  # the reload's load waits until stop() has run
            loading.set()
            assert release.wait(30)
        loaded.append(TransformersBackend.from_pretrained(model, device="cpu"))
        return loaded[-1]

    scorer = build_scorer(model=str(dir1), max_wait_ms=0, reload_root=str(root), loader=loader)
    await scorer.start()
    reload = asyncio.create_task(scorer.reload(str(dir2)))
    await asyncio.to_thread(loading.wait, 30)
    await scorer.stop()
    release.set()
    with pytest.raises(ScorerNotReady, match="stopped while the new model was loading"):
        await reload
    assert [b.model is None for b in loaded] == [True, True]


async def test_stop_closes_a_backend_that_has_engine_processes(gated):
    """vLLM's backend owns engine processes: stop() must end them, after the last batch."""
    closed = []
    gated.close = lambda: closed.append(len(gated.batches))
    scorer = make_scorer(gated, max_wait_ms=0)
    await scorer.start()
    result = await scorer.score([shop_request(prompt_text=PROMPT)])
    assert result[0].value is not None and not closed
    await scorer.stop()
    assert closed == [len(gated.batches)]


def test_bounds_are_checked_and_shown(gated):
    for bad in ({"max_queue_items": 0}, {"max_wait_ms": -1}, {"max_batch_tokens": 0},
                {"max_items_per_batch": 0}):
        with pytest.raises(ValueError):
            make_scorer(gated, **bad)
    scorer = make_scorer(gated, max_batch_tokens=100, max_items_per_batch=7)
    assert (scorer.max_batch_tokens, scorer.max_items_per_batch) == (100, 7)
    # Before start: the setting as the name, no vocabulary, nothing queued.
    assert (scorer.model_name, scorer.vocab_size, scorer.queue_depth) == ("tiny", 0, 0)
