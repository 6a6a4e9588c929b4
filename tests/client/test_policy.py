"""The I/O-free parts of the client: backoff, Retry-After parsing, rotation, re-indexing,
and the concurrency bound (against a staged slow server)."""

from __future__ import annotations

import email.utils
import random
import threading
import time

import pytest

from client import DeadlineExceededError, FieldError, RetryPolicy, RewardClient, ServerError
from client._errors import reindex_param
from client._policy import EndpointPool, parse_retry_after, split_urls
from tests.client.conftest import error_reply


def test_full_jitter_backoff_is_capped():
    policy = RetryPolicy(base_backoff=0.5, max_backoff=4.0)
    rng = random.Random(0)
    for retry in range(1, 12):
        ceiling = min(4.0, 0.5 * 2 ** (retry - 1))
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling * 0.8  # full jitter spans the range
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(later) <= 31


def test_pool_round_robin_blocking_and_demotion():
    pool = EndpointPool(["http://a", "http://b", "http://c"])
    assert [pool.pick()[0] for _ in range(4)] == ["http://a", "http://b", "http://c", "http://a"]
    pool.demote("http://b", 60)
    assert {pool.pick()[0] for _ in range(4)} == {"http://a", "http://c"}
    pool.block("http://a", 60)
    pool.block("http://c", 60)
    url, wait = pool.pick()
    assert url == "http://b" and wait == 0  # demoted but not blocked: still usable
    pool.block("http://b", 1)
    url, wait = pool.pick()
    assert url == "http://b" and 0 < wait <= 1  # everything blocked: the soonest, with a wait


def test_urls_and_param_reindexing():
    assert split_urls(" http://a:1/ , http://b:2") == ["http://a:1/", "http://b:2"]
    with pytest.raises(ValueError):
        split_urls("a:1")
    assert reindex_param("items[3].ground_truth.name", 512) == "items[515].ground_truth.name"
    assert reindex_param("config.dars", 512) == "config.dars"
    assert reindex_param(None, 512) is None


def test_field_errors_name_their_list_entry():
    error = FieldError("query[7].ground_truth.type", "unknown action type")
    assert error.entry() == (7, "ground_truth.type")
    assert error.shifted(100) == FieldError("query[107].ground_truth.type", "unknown action type")
    assert FieldError("items[2]", "not an object").entry() == (2, "")
    assert FieldError("prompts[0][1].content", "too long").entry() == (0, "[1].content")
    assert FieldError("config.dars", "not a number").entry() is None
    assert FieldError("config.dars", "x").shifted(5) == FieldError("config.dars", "x")


def test_concurrency_is_bounded(staged_server, rules_server):
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(seen):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return None  # then proxy to the real service

    staged = staged_server(slow, rules_server.url)
    item = {"completion": "{}", "ground_truth": {"type": "terminate"}}
    with RewardClient(staged.url, chunk_size=10, max_concurrency=2) as client:
        batch = client.score([item] * 80)  # 8 chunks
    assert len(batch) == 80 and len(staged.seen) == 8
    assert state["peak"] == 2


def test_slot_wait_counts_against_the_deadline(staged_server):
    staged = staged_server(lambda seen: (time.sleep(1.5), error_reply(500, "slow"))[1])
    item = {"completion": "{}", "ground_truth": {"type": "terminate"}}
    client = RewardClient(staged.url, max_concurrency=1, retry=RetryPolicy(max_attempts=1))
    errors: dict[float, Exception] = {}

    def call(timeout: float) -> None:
        try:
            client.score([item], timeout=timeout)
        except Exception as exc:
            errors[timeout] = exc

    first = threading.Thread(target=call, args=(3.0,))
    first.start()
    time.sleep(0.2)  # the first call holds the only slot for 1.5 s
    started = time.monotonic()
    call(0.5)
    assert time.monotonic() - started < 1.0
    first.join()
    client.close()
    assert len(staged.seen) == 1  # the second call never got a slot, so never sent
    assert isinstance(errors[0.5], DeadlineExceededError) and "slot" in str(errors[0.5])
    assert isinstance(errors[3.0], ServerError)
