"""The one request loop and readiness wait (``client._steps``) run without any I/O: a
script of outcomes drives them, step by step, as each client's ``_perform`` does."""

from __future__ import annotations

import httpx
import pytest

from client import DeadlineExceededError, RetryPolicy, ServerError
from client._calls import CallState
from client._policy import Deadline, EndpointPool
from client._steps import Acquire, Release, Send, Sleep, drive, ready_steps, request_steps

URL = "http://127.0.0.1:9"


def call(attempts: int = 3, seconds: float = 30.0) -> CallState:
    policy = RetryPolicy(max_attempts=attempts, base_backoff=0.0, max_backoff=0.0)
    return CallState(EndpointPool([URL]), policy, Deadline(seconds))


class Script:
    """Answers each step from a list of Send outcomes; records every step it saw."""

    def __init__(self, *sends: httpx.Response | httpx.TransportError, slots: bool = True):
        self.sends = list(sends)
        self.slots = slots
        self.steps: list[object] = []

    def __call__(self, step):
        self.steps.append(step)
        if isinstance(step, Acquire):
            return self.slots
        if isinstance(step, Send):
            return self.sends.pop(0)
        return None

    def kinds(self) -> list[str]:
        return [type(step).__name__ for step in self.steps]


def test_a_transport_error_is_retried_and_the_answer_returned() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json={"ok": 1}))
    url, payload = drive(request_steps(call(), "POST", "/v1/rewards", {"items": []}), script)
    assert (url, payload) == (URL, {"ok": 1})
    assert script.kinds() == ["Sleep", "Acquire", "Send"] * 2
    send = script.steps[2]
    assert send.url == URL + "/v1/rewards" and send.holds_slot
    assert float(send.headers["X-Request-Timeout"]) <= 30.0


def test_the_last_error_is_raised_when_no_attempt_is_left() -> None:
    script = Script(*[httpx.Response(500, json={"error": {"message": "boom"}})] * 2)
    with pytest.raises(ServerError, match="boom") as caught:
        drive(request_steps(call(attempts=2), "GET", "/v1/config", None), script)
    assert caught.value.attempts == 2 and script.kinds().count("Send") == 2


def test_no_slot_in_time_is_a_deadline_error_and_sends_nothing() -> None:
    script = Script(slots=False)
    with pytest.raises(DeadlineExceededError, match="connection slot"):
        drive(request_steps(call(), "POST", "/v1/rewards", {}), script)
    assert script.kinds() == ["Sleep", "Acquire"]


def test_a_slot_taken_after_the_deadline_is_given_back() -> None:
    state = call(seconds=0.001)
    steps = request_steps(state, "POST", "/v1/rewards", {})
    assert isinstance(next(steps), Sleep)
    assert isinstance(steps.send(None), Acquire)
    while not state.deadline.expired():
        pass
    assert isinstance(steps.send(True), Release)
    with pytest.raises(DeadlineExceededError):
        steps.send(None)


def test_ready_steps_probe_without_a_slot_until_every_url_answers() -> None:
    urls = ["http://a:1", "http://b:1"]
    script = Script(
        httpx.Response(200), httpx.ConnectError("down"),  # round 1: b is down
        httpx.Response(503),  # round 2: b is loading
        httpx.Response(200),  # round 3: b is ready
    )
    drive(ready_steps(urls, timeout=60, interval=0.5), script)
    probes = [step for step in script.steps if isinstance(step, Send)]
    assert [p.url for p in probes] == ["http://a:1/readyz"] + ["http://b:1/readyz"] * 3
    assert not any(p.holds_slot for p in probes)
    assert script.kinds().count("Sleep") == 2


def test_ready_steps_name_what_is_not_ready_after_the_timeout() -> None:
    script = Script(*[httpx.ConnectError("down")] * 4)
    with pytest.raises(TimeoutError, match="http://b:1"):
        drive(ready_steps(["http://b:1"], timeout=0, interval=0), script)

