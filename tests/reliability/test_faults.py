"""Faults: the scoring backend failing under a real uvicorn server.

An exception, an out-of-memory error and a hang past the deadline must give per-item
``self_certainty: null`` with a reason while the rule rewards still return (or 503 with
``on_certainty_failure="error"``): never a silent 0, never a dead worker.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest

from reward_server.certainty.types import CertaintyResult
from tests.reliability.conftest import FAKE_CERTAINTY, FaultState, faulty_scorer
from tests.reliability.workload import ALPHA, expected_of

SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "usb c cable"}
CLICK = {"type": "click", "name": "add_to_cart.buy_now"}
ITEMS = [
    {"id": "a", "completion": json.dumps({"rationale": "I search.", "action": SEARCH}),
     "ground_truth": SEARCH},
    {"id": "b", "completion": json.dumps({"rationale": "I buy.", "action": CLICK}),
     "ground_truth": CLICK},
    {"id": "c", "completion": "not json at all", "ground_truth": {"type": "terminate"}},
]
RULES = [expected_of(i["completion"], i["ground_truth"]).reward for i in ITEMS]


def post(server, items=ITEMS, timeout: float = 30, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/rewards",
                      json={"items": items, "self_certainty_source": "model"},
                      headers=headers, timeout=timeout)


def assert_rules_with_null_certainty(response: httpx.Response, detail_has: str) -> None:
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    for result, rules in zip(results[:2], RULES[:2], strict=True):
        assert result["components"]["self_certainty"] is None
        assert result["certainty"]["reason"] == "backend_error"
        assert detail_has in result["certainty"]["detail"]
        assert result["reward"] == rules and rules > 0  # rules kept: never a silent 0
    assert results[2]["certainty"]["reason"] == "format_failure"
    assert results[2]["reward"] == 0.0


def assert_healthy(server) -> None:
    """The worker survived: the backend works again and values come back."""
    response = post(server)
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert first["components"]["self_certainty"] == FAKE_CERTAINTY
    assert first["reward"] == pytest.approx(RULES[0] + ALPHA * FAKE_CERTAINTY, abs=1e-12)
    assert httpx.get(server.url + "/healthz").status_code == 200


@pytest.mark.parametrize(
    ("mode", "detail"),
    [("raise", "injected backend failure"), ("oom", "CUDA out of memory"),
     ("torch_oom", "OutOfMemoryError")],
)
def test_backend_failure_gives_null_with_reason_and_rules(fault_server, mode, detail) -> None:
    state = FaultState()
    server = fault_server(state)
    assert_healthy(server)
    state.mode = mode
    for _ in range(3):  # repeated failures do not wear the worker down
        response = post(server)
        if mode == "torch_oom":
            detail = "out of memory"
        assert_rules_with_null_certainty(response, detail)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'reward_self_certainty_null_total{reason="backend_error"}' in metrics
    state.mode = "ok"
    assert_healthy(server)


class RaisingScorer:
    """A whole-scorer failure (the scorer itself raises, e.g. OOM while batching)."""

    def __init__(self, inner, exc: BaseException) -> None:
        self.inner, self.exc, self.failing = inner, exc, True

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def score(self, requests, deadline=None) -> list[CertaintyResult]:
        if self.failing:
            raise self.exc
        return await self.inner.score(requests, deadline)


@pytest.mark.parametrize("policy", ["null", "error"])
def test_scorer_level_oom_null_or_503(fault_server, policy) -> None:
    state = FaultState()
    scorer = RaisingScorer(faulty_scorer(state), RuntimeError("CUDA out of memory (injected)"))
    server = fault_server(state, scorer=scorer, on_certainty_failure=policy)
    response = post(server)
    if policy == "null":
        assert_rules_with_null_certainty(response, "CUDA out of memory")
    else:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "scorer_unavailable"
        assert "Retry-After" in response.headers
    scorer.failing = False
    assert_healthy(server)


@pytest.mark.parametrize("mode", ["raise", "oom"])
def test_backend_failure_is_503_when_configured(fault_server, mode) -> None:
    state = FaultState(mode=mode)
    server = fault_server(state, on_certainty_failure="error")
    response = post(server)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "scorer_unavailable"


def test_hung_backend_does_not_block_rules_or_probes(fault_server) -> None:
    """While the model thread hangs, rules-only requests and probes are answered at once,
    and a model request queued behind the hung batch gets 504 at its deadline."""
    state = FaultState(mode="hang")
    server = fault_server(state)
    with httpx.Client(timeout=30) as client:
        # First model request: its batch reaches the backend and hangs there.
        first = threading.Thread(target=_swallow, args=(server,), daemon=True)
        first.start()
        _wait_batches(state, 1)
        rules = client.post(server.url + "/v1/rewards",
                            json={"items": ITEMS, "self_certainty_source": "none"})
        assert rules.status_code == 200
        assert [r["reward"] for r in rules.json()["results"]] == RULES
        assert client.get(server.url + "/healthz").status_code == 200
        assert state.hanging  # answered while the model thread is still stuck
        # A second model request is queued behind the hung batch: 504 at its deadline,
        # answered while the batch still hangs.
        queued = post(server, timeout=30, **{"X-Request-Timeout": "1"})
        assert queued.status_code == 504, queued.text
        assert state.hanging
        state.release.set()
        state.mode = "ok"
        first.join(10)
        assert_healthy(server)


def _swallow(server) -> None:
    with contextlib.suppress(httpx.HTTPError):
        post(server, timeout=30, **{"X-Request-Timeout": "1"})


def _wait_batches(state: FaultState, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while state.batches < count:
        assert time.monotonic() < deadline, "no batch reached the backend"
        time.sleep(0.01)


def test_hang_past_deadline_is_answered_near_the_deadline(fault_server) -> None:
    """The request whose own batch hangs is answered at its deadline, while the backend
    is still stuck (it would otherwise wait the whole hang)."""
    state = FaultState(mode="hang")
    server = fault_server(state)
    response = post(server, timeout=30, **{"X-Request-Timeout": "1"})
    assert state.hanging
    if response.status_code == 200:
        for result in response.json()["results"][:2]:
            assert result["components"]["self_certainty"] is None
            assert result["certainty"]["reason"]
    else:
        assert response.status_code in (503, 504), response.text
