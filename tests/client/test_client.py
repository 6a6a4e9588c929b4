"""RewardClient / AsyncRewardClient against real ``shop-r1-reward serve`` processes, with a
staged server only where a fault must be injected (429/503, slow, short replies)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest

from client import (
    AsyncRewardClient,
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    OverloadedError,
    ResponseMismatchError,
    RetryPolicy,
    RewardClient,
    ScoreItem,
    ServerError,
    TransportError,
)
from tests.client.conftest import error_reply, request_count


def answer(rationale: str, action: dict) -> str:
    return json.dumps({"rationale": rationale, "action": action})


CLICK = {"type": "click", "name": "refinements.customer_reviews"}
SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"}
TERMINATE = {"type": "terminate"}
CASES = [  # (action, ground truth, expected reward): REWARD_CONTRACT.md §7
    (CLICK, CLICK, 1001.0),
    ({"type": "click", "name": "add_to_cart.buy_now"}, CLICK, 1.0),
    ({**SEARCH, "text": "gaming laptop"}, SEARCH, 1.1),
    (TERMINATE, TERMINATE, 0.8),
    (TERMINATE, {"type": "click", "name": "buy_now"}, 0.5),
]


def items(count: int, with_ids: bool = True) -> list[ScoreItem]:
    out = []
    for index in range(count):
        action, truth, _ = CASES[index % len(CASES)]
        out.append(
            ScoreItem(
                completion=answer(f"step {index}", action),
                ground_truth=truth,
                id=f"item-{index}" if with_ids else None,
            )
        )
    return out


def expected(count: int) -> list[float]:
    return [CASES[index % len(CASES)][2] for index in range(count)]


def dead_url() -> str:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


FAST = RetryPolicy(max_attempts=4, base_backoff=0.05, max_backoff=0.2)


def test_scores_typed_results_in_order(rules_server):
    with RewardClient(rules_server.url) as client:
        batch = client.score(items(5), self_certainty_source="none")
    assert batch.rewards == pytest.approx(expected(5))
    first = batch[0]
    assert first.components.format == 0.5 and first.components.value == pytest.approx(1000)
    assert first.components.self_certainty is None and first.format_ok
    assert first.action == {"type": "click", "name": CLICK["name"], "text": None}
    assert [r.id for r in batch] == [f"item-{i}" for i in range(5)]
    assert batch.config_hash and batch.scores[0] == pytest.approx(1.0)


def test_format_failure_is_a_score_not_an_error(rules_server):
    with RewardClient(rules_server.url) as client:
        batch = client.score([{"completion": "```json\n{}\n```", "ground_truth": TERMINATE}])
    assert batch[0].reward == 0 and not batch[0].format_ok
    assert batch[0].format_error is not None and batch[0].format_error.reason


def test_chunking_keeps_order_and_ids(rules_server):
    count = 2500
    before = request_count(rules_server.url, status="200")
    with RewardClient(rules_server.url, chunk_size=512, max_concurrency=4) as client:
        batch = client.score(items(count))
    assert request_count(rules_server.url, status="200") - before == 5  # ceil(2500 / 512)
    assert [r.index for r in batch] == list(range(count))
    assert [r.id for r in batch] == [f"item-{i}" for i in range(count)]
    assert batch.rewards == pytest.approx(expected(count))


async def test_async_chunking_keeps_order(rules_server):
    async with AsyncRewardClient(rules_server.url, chunk_size=100, max_concurrency=3) as client:
        batch = await client.score(items(1050, with_ids=False))
    assert [r.index for r in batch] == list(range(1050))
    assert batch.rewards == pytest.approx(expected(1050))


def test_round_robin_over_two_servers(start_server):
    first, second = start_server(), start_server()
    with RewardClient([first.url, second.url]) as client:
        for _ in range(6):
            client.score(items(2))
    assert request_count(first.url, status="200") == 3
    assert request_count(second.url, status="200") == 3


def test_failover_when_one_url_is_down(rules_server):
    before = request_count(rules_server.url, status="200")
    with RewardClient([dead_url(), rules_server.url], retry=FAST) as client:
        for _ in range(4):
            assert client.score(items(3)).rewards == pytest.approx(expected(3))
    assert request_count(rules_server.url, status="200") - before == 4


def test_every_url_down_raises_transport_error():
    started = time.monotonic()
    with (
        RewardClient([dead_url(), dead_url()], retry=FAST, timeout=10) as client,
        pytest.raises(TransportError, match="could not reach") as caught,
    ):
        client.score(items(1))
    assert caught.value.attempts == FAST.max_attempts
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [429, 503])
def test_retry_honours_retry_after(staged_server, rules_server, status):
    def script(seen):
        return error_reply(status, "busy", retry_after="1") if seen.number <= 2 else None

    staged = staged_server(script, upstream=rules_server.url)
    with RewardClient(staged.url, retry=FAST, timeout=30) as client:
        batch = client.score(items(3))
    assert batch.rewards == pytest.approx(expected(3))
    assert len(staged.seen) == 3
    gaps = [b - a for a, b in zip(staged.times, staged.times[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps  # never sooner than Retry-After


def test_retry_gives_up_with_overloaded_error(staged_server):
    staged = staged_server(lambda seen: error_reply(429, "queue full", retry_after="0"))
    with (
        RewardClient(staged.url, retry=FAST) as client,
        pytest.raises(OverloadedError, match="overloaded") as caught,
    ):
        client.score(items(1))
    assert len(staged.seen) == FAST.max_attempts and caught.value.status == 429


def test_5xx_is_retried(staged_server, rules_server):
    staged = staged_server(
        lambda seen: error_reply(500, "boom") if seen.number == 1 else None, rules_server.url
    )
    with RewardClient(staged.url, retry=FAST) as client:
        assert client.score(items(2)).rewards == pytest.approx(expected(2))
    assert len(staged.seen) == 2
    always = staged_server(lambda seen: error_reply(502, "bad gateway"))
    with RewardClient(always.url, retry=FAST) as client, pytest.raises(ServerError):
        client.score(items(1))


def test_408_is_retried(staged_server, rules_server):
    """408 (headers or body not received in time) is worth retrying: README's status table."""
    staged = staged_server(
        lambda seen: error_reply(408, "body stalled") if seen.number == 1 else None,
        rules_server.url,
    )
    with RewardClient(staged.url, retry=FAST) as client:
        assert client.score(items(2)).rewards == pytest.approx(expected(2))
    assert len(staged.seen) == 2


def test_no_retry_on_422(rules_server):
    before = request_count(rules_server.url, status="422")
    bogus = ScoreItem(completion="{}", ground_truth={"type": "bogus"})
    blank = ScoreItem(completion="{}", ground_truth={"type": "click", "name": " "})
    bad = [*items(600), bogus, *items(3), blank]
    with (
        RewardClient(rules_server.url, chunk_size=512, retry=FAST) as client,
        pytest.raises(BadRequestError) as caught,
    ):
        client.score(bad)
    assert request_count(rules_server.url, status="422") - before == 1
    error = caught.value
    assert error.status == 422 and error.attempts == 1
    assert error.param == "items[600].ground_truth.type"  # re-indexed to the caller's list
    # Every invalid field of the chunk, re-indexed the same way.
    assert [e.param for e in error.errors] == [
        "items[600].ground_truth.type", "items[604].ground_truth.name"]
    assert "required" in error.errors[1].message
    assert "cannot succeed" in str(error)


def test_no_retry_on_staged_4xx(staged_server):
    staged = staged_server(lambda seen: error_reply(400, "nope"))
    with RewardClient(staged.url, retry=FAST) as client, pytest.raises(BadRequestError):
        client.score(items(1))
    assert len(staged.seen) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_failed_chunk_stops_the_other_chunks_retries(staged_server, kind):
    """The call is all-or-nothing: once a chunk has failed for good the others stop
    retrying, and the error comes back without waiting for them (both clients alike)."""

    def script(seen):
        if seen.json()["items"][0]["id"] == "item-1":
            return error_reply(422, "bad ground truth")
        return error_reply(503, "loading", retry_after="20")

    staged = staged_server(script)
    retry = RetryPolicy(max_attempts=10, base_backoff=0.05, max_backoff=0.2)
    options = {"chunk_size": 1, "timeout": 60, "retry": retry}
    if kind == "sync":
        with RewardClient(staged.url, **options) as client, pytest.raises(BadRequestError):
            client.score(items(2))
    else:
        async def score() -> None:
            async with AsyncRewardClient(staged.url, **options) as client:
                await client.score(items(2))

        with pytest.raises(BadRequestError):
            asyncio.run(score())
    other = [seen for seen in staged.seen if seen.json()["items"][0]["id"] == "item-0"]
    assert len(other) <= 1  # its first attempt at most: no retry after the 422


def test_api_key(start_server):
    server = start_server(api_key="s3cret")
    with RewardClient(server.url, retry=FAST) as client, pytest.raises(AuthenticationError):
        client.score(items(1))
    with RewardClient(server.url, api_key="s3cret") as client:
        assert client.score(items(1)).rewards == pytest.approx(expected(1))


def test_deadline_is_enforced_and_sent(staged_server, rules_server):
    def slow(seen):
        time.sleep(3)
        return error_reply(500, "too late")

    staged = staged_server(slow)
    started = time.monotonic()
    with (
        RewardClient(staged.url, timeout=0.5, retry=FAST) as client,
        pytest.raises(DeadlineExceededError, match="Raise timeout"),
    ):
        client.score(items(1))
    assert time.monotonic() - started < 1.5
    sent = float(staged.seen[0].headers["X-Request-Timeout"])
    assert 0 < sent <= 0.5
    with RewardClient(rules_server.url) as client:  # the real server accepts the header
        assert client.score(items(1), timeout=5).rewards == pytest.approx(expected(1))


def test_retry_after_beyond_deadline_fails_fast(staged_server):
    staged = staged_server(lambda seen: error_reply(503, "loading", retry_after="30"))
    started = time.monotonic()
    with (
        RewardClient(staged.url, timeout=2, retry=FAST) as client,
        pytest.raises(DeadlineExceededError),
    ):
        client.score(items(1))
    assert time.monotonic() - started < 1 and len(staged.seen) == 1


def test_length_mismatch_detected(staged_server, rules_server):
    def drop_last(seen):
        status, headers, content = staged.forward(seen)
        body = json.loads(content)
        body["results"] = body["results"][:-1]
        return status, headers, json.dumps(body).encode()

    staged = staged_server(drop_last, rules_server.url)
    with (
        RewardClient(staged.url) as client,
        pytest.raises(ResponseMismatchError, match="2 results for 3 items"),
    ):
        client.score(items(3))


def test_reordered_reply_detected(staged_server, rules_server):
    def swap(seen):
        status, headers, content = staged.forward(seen)
        body = json.loads(content)
        body["results"].reverse()
        return status, headers, json.dumps(body).encode()

    staged = staged_server(swap, rules_server.url)
    with RewardClient(staged.url) as client, pytest.raises(ResponseMismatchError):
        client.score(items(3))


async def test_async_failover_retry_and_mismatch(staged_server, rules_server):
    staged = staged_server(
        lambda seen: error_reply(429, "busy", retry_after="1") if seen.number == 1 else None,
        rules_server.url,
    )
    async with AsyncRewardClient([staged.url], retry=FAST) as client:
        batch = await client.score(items(4))
    assert batch.rewards == pytest.approx(expected(4)) and len(staged.seen) == 2
    async with AsyncRewardClient([dead_url(), rules_server.url], retry=FAST) as client:
        for _ in range(3):
            assert (await client.score(items(2))).rewards == pytest.approx(expected(2))
    async with AsyncRewardClient(rules_server.url) as client:
        with pytest.raises(BadRequestError):
            await client.score([{"completion": "{}", "ground_truth": "not json"}])


def test_injectable_transport():
    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["items"]
        results = [
            {
                "index": i,
                "id": item.get("id"),
                "reward": 0.8,
                "score": 1.0,
                "components": {
                    "format": 0.5,
                    "type": 0.3,
                    "attribute": 0,
                    "value": 0,
                    "self_certainty": None,
                },
                "format_ok": True,
                "format_error": None,
                "action": {"type": "terminate"},
                "certainty": {"source": "none"},
            }
            for i, item in enumerate(sent)
        ]
        return httpx.Response(
            200,
            json={
                "results": results,
                "config_hash": "x",
                "model": None,
                "timings": {"total_seconds": 0},
            },
        )

    with RewardClient("http://reward.invalid", transport=httpx.MockTransport(handler)) as client:
        assert client.score(items(3)).rewards == [0.8] * 3


def test_token_ids_are_sent_as_ints_and_a_float_is_refused_not_truncated():
    import numpy as np

    item = ScoreItem(completion="{}", ground_truth={"type": "terminate"},
                     prompt_ids=np.array([5, 7], dtype=np.int64), completion_ids=[np.int32(9)])
    wire = item.to_wire()
    assert wire["prompt_ids"] == [5, 7] and wire["completion_ids"] == [9]
    assert json.loads(json.dumps(wire))["prompt_ids"] == [5, 7]  # plain ints, not numpy's
    for bad, kind in ((3.7, "float"), (np.float32(2.0), "float32"), (True, "bool")):
        bad_item = ScoreItem(completion="{}", ground_truth={"type": "terminate"},
                             completion_ids=[1, bad])
        with pytest.raises(TypeError, match=rf"completion_ids\[1\] must be an integer .* {kind}"):
            bad_item.to_wire()
