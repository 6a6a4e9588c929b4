"""The request loop and the readiness wait, once, as generators that do no I/O.

Each yields the I/O it needs next as a step and is sent that step's outcome; the blocking
and the asyncio clients each perform the steps their own way (``RewardClient._perform``,
``AsyncRewardClient._perform``) and differ in nothing else. The retry decisions inside the
loop are :class:`~client._calls.CallState`'s.

Steps and what the driver sends back:

* :class:`Sleep` ``seconds`` before the next attempt: None (a blocking driver may raise
  here to abandon the call);
* :class:`Acquire` a connection slot within ``timeout`` seconds: whether it got one;
* :class:`Release` the slot (the deadline passed while waiting for it): None;
* :class:`Send` the request (then release the slot if it holds one): the
  ``httpx.Response``, or the ``httpx.TransportError`` it raised.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

import httpx

from client._calls import CallState

# A readiness probe answers at once or the server is not up: no need for the call deadline.
PROBE_TIMEOUT = 2.0
READY_PATH = "/readyz"


class Sleep(NamedTuple):
    seconds: float


class Acquire(NamedTuple):
    timeout: float


class Release(NamedTuple):
    pass


class Send(NamedTuple):
    method: str
    url: str
    body: Any
    headers: dict[str, str]
    timeout: httpx.Timeout | float
    holds_slot: bool = True

    def request_args(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for this request."""
        return {"method": self.method, "url": self.url, "json": self.body,
                "headers": self.headers, "timeout": self.timeout}


Step = Sleep | Acquire | Release | Send
Outcome = httpx.Response | httpx.TransportError | bool | None
Result = TypeVar("Result")
Steps = Generator[Step, Outcome, Result]


def request_steps(
    call: CallState, method: str, path: str, body: Any
) -> Steps[tuple[str, Any]]:
    """One logical call: attempts until an answer, a terminal error or the deadline.

    Returns ``(url, json_body)`` of the answer; raises the client's error when none is
    left. The slot is taken before ``X-Request-Timeout`` and the attempt's timeout are
    computed, so both count the time spent waiting for it.
    """
    deadline = call.deadline
    while True:
        url, wait = call.plan()
        yield Sleep(wait)
        if not (yield Acquire(max(0.0, deadline.remaining()))):
            raise call.deadline_error("every connection slot stayed busy")
        if deadline.expired():
            yield Release()
            raise call.deadline_error("every connection slot stayed busy")
        outcome = yield Send(method, url + path, body, call.headers(), call.attempt_timeout())
        if isinstance(outcome, httpx.TransportError):
            call.transport_failed(url, outcome)
            continue
        assert isinstance(outcome, httpx.Response)
        payload = call.handle(url, outcome)
        if payload is not None:
            return url, payload


def ready_steps(urls: list[str], timeout: float, interval: float) -> Steps[None]:
    """Probe every base URL's ``/readyz`` each ``interval`` seconds until all answer 200;
    raises ``TimeoutError`` naming those still not ready after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending:
        for url in list(pending):
            outcome = yield Send("GET", url + READY_PATH, None, {}, PROBE_TIMEOUT, False)
            if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                pending.remove(url)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:g}s: {', '.join(pending)}")
        if pending:
            yield Sleep(interval)


def drive(steps: Steps[Result], perform: Callable[[Step], Outcome]) -> Result:
    """Run ``steps`` to the end with a blocking ``perform``; return what they return."""
    try:
        step = next(steps)
        while True:
            step = steps.send(perform(step))
    except StopIteration as done:
        return done.value


async def drive_async(
    steps: Steps[Result], perform: Callable[[Step], Awaitable[Outcome]]
) -> Result:
    """Run ``steps`` to the end with an asyncio ``perform``; return what they return."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await perform(step))
    except StopIteration as done:
        return done.value
