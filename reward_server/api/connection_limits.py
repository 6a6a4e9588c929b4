"""Connection-level limits that uvicorn's HTTP/1.1 protocol does not enforce by itself.

uvicorn (httptools) reads request headers of any size and waits for them, for a request
body and for a client to read its answer, without a time limit; a single connection can
then hold hundreds of MB, and a few hundred slow ones (slowloris, slow POST, slow read)
hold the process's file descriptors. This protocol is uvicorn's own ``HttpToolsProtocol``
with these limits added:

* **header size**: the request line plus headers may take ``max_header_bytes``; past it
  the answer is 431 and the connection closes. Bytes are counted as they arrive, so a
  single endless header is cut off within one socket read of the limit.
* **header time**: from the moment a connection opens, or a new request on it begins,
  its headers must be complete within ``header_timeout`` seconds (in total, however the
  bytes are spread), else 408 and close.
* **body time**, three bounds on one upload, each a 408 and close (a plain close when an
  answer has already started):

  - *deadline*: the whole body must have arrived within the request's own deadline,
    counted from its headers: ``X-Request-Timeout`` capped by, and defaulting to,
    ``request_timeout`` (the server's ``--default-timeout-seconds``);
  - *minimum rate* (Apache ``mod_reqtimeout``'s ``MinRate``): after ``received`` bytes
    the upload may have taken at most ``rate_grace + received / min_rate`` seconds, so
    a sender must average ``min_rate`` bytes/s once the grace has passed;
  - *pause*: no pause between two pieces may last ``body_timeout`` seconds.

  Time the server itself stopped reading, to apply back-pressure, counts towards none of
  the rate and pause bounds.
* **answer time**: the same minimum rate and pause hold for the client reading its
  answer, from when bytes first wait to be sent; a connection past either is aborted
  (closing it gracefully would wait for that client forever, holding its socket and its
  unsent answer).
* **connection cap**: at ``max_connections`` open connections a new one evicts another:
  the oldest connection that is not in a request (waiting for headers, or idle between
  requests; one with unsent bytes is aborted), else the slowest upload (fewest body bytes
  per second since its headers, an upload under a second old counted as a second long;
  it gets a 408). Only when every connection is in a request and none uploading is the
  new one refused (503 with Retry-After). Probes and real requests therefore get in
  while slow connections are shed.

Every cut is counted in ``reward_connections_dropped_total{reason}``.

Timeouts are deadlines that one sweeper per event loop checks a few times a second (at
most a second late), not a timer per connection and request.

The limits travel on :class:`LimitedConfig` (a ``uvicorn.Config``), so worker processes
receive them with the rest of uvicorn's configuration.

This module reads and overrides uvicorn internals (the protocol's ``connections``,
``flow``, ``cycle``, ``headers``, ``url``, ``server_state`` and parser callbacks):
pyproject.toml pins uvicorn to the series it was written against, and
tests/reliability/test_uvicorn_internals.py fails when one of them moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import resource
import socket
import struct
import time
import weakref
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reward_server.protocol import error_document

# Shells and kernels default to 1,024 open files; leave room for the process's own.
_MIN_CONNECTIONS = 16
# Retry-After of a connection refused at the cap: the smallest hint, since a connection
# frees as soon as any request in flight ends.
CONNECTION_RETRY_AFTER = 1
DEADLINE_HEADER = b"x-request-timeout"
# An upload younger than this is judged at the cap as if it were this old: its first
# bytes may still be on their way.
_EVICTION_MIN_AGE = 1.0


def default_max_connections() -> int:
    """Three quarters of the soft open-file limit: the rest stays for the process's own
    files, model weights and pipes, so ``accept`` never fails with EMFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65_536
    return max(_MIN_CONNECTIONS, soft * 3 // 4)


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of the module docstring; times in seconds, ``min_rate`` in bytes/s."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    min_rate: float = 64 * 1024
    rate_grace: float = 10.0
    request_timeout: float = 120.0
    max_connections: int = 1024

    def allowed_seconds(self, transferred: int) -> float:
        """How long a transfer of ``transferred`` bytes so far may have taken (MinRate)."""
        return self.rate_grace + transferred / self.min_rate


class LimitedConfig(uvicorn.Config):
    """``uvicorn.Config`` that carries :class:`ConnectionLimits` to the protocol."""

    def __init__(self, *args: Any, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("http", LimitedHttpToolsProtocol)
        super().__init__(*args, **kwargs)
        self.connection_limits = connection_limits


def error_bytes(status: int, kind: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in the service's one error shape, closing the connection."""
    body = json.dumps(error_document(status, kind, message)).encode()
    # A 503 is transient: say when to come back, as every other 503 of the service does.
    retry_after = b"retry-after: %d\r\n" % CONNECTION_RETRY_AFTER if status == 503 else b""
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"%sconnection: close\r\n\r\n"
        % (status, http.HTTPStatus(status).phrase.encode(), len(body), retry_after)
    )
    return head + body


def request_seconds(headers: list[tuple[bytes, bytes]], default: float) -> float:
    """The request's deadline in seconds: ``X-Request-Timeout`` when it is a positive
    number, capped by ``default``; else ``default`` (the app answers a bad value)."""
    for name, value in headers:
        if name == DEADLINE_HEADER:
            try:
                seconds = float(value)
            except ValueError:
                return default
            return min(seconds, default) if seconds > 0 else default
    return default


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", ConnectionLimits())
        self.awaiting_headers = True  # between requests or before the first one
        self.idle_since = time.monotonic()
        self._raw_header_bytes = 0
        self._header_overflow = False
        self._header_deadline: float | None = None
        # The upload of the current request, from its headers to its last body byte.
        self.uploading = False
        self.upload_started = 0.0
        self.upload_received = 0
        self._upload_last = 0.0  # when the last body bytes arrived (or reading resumed)
        self._upload_seconds = 0.0  # the request's deadline, in seconds from its headers
        self._upload_deadline = 0.0  # the same, as a time.monotonic()
        self._upload_checked = 0.0  # the sweep before, to credit time spent read-paused
        # The answer waiting to be sent: (since, bytes taken, buffer size at the last
        # sweep, when the client last took some); None while nothing waits.
        self._answer: tuple[float, int, int, float] | None = None

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._reject(503, "overloaded", "too many open connections; retry shortly",
                         "connection_cap")
            return
        _Sweeper.ensure(self.server_state, self.loop, self.limits)
        self._await_headers()

    def _evict_one(self) -> bool:
        """Close the oldest other connection not in a request, else the slowest other
        upload; False if there is neither."""
        others = [protocol for protocol in self.connections if protocol is not self]
        idle = [protocol for protocol in others if getattr(protocol, "awaiting_headers", False)]
        if idle:
            oldest = min(idle, key=lambda protocol: protocol.idle_since)
            _drop(oldest.transport)
            _count_dropped("evicted")
            return True
        now = time.monotonic()
        uploads = [
            protocol for protocol in others
            if getattr(protocol, "uploading", False) and not protocol.flow.read_paused
            and not protocol.transport.is_closing()
        ]
        if not uploads:
            return False
        slowest = min(uploads, key=lambda protocol: (protocol.upload_rate(now),
                                                     protocol.upload_started))
        slowest.cut_upload(
            f"evicted at the connection cap: the slowest upload "
            f"({slowest.upload_rate(now):.0f} bytes/s)", "evicted_upload")
        return True

    def upload_rate(self, now: float) -> float:
        """Body bytes per second since the headers (a younger upload counts as
        ``_EVICTION_MIN_AGE`` old)."""
        return self.upload_received / max(now - self.upload_started, _EVICTION_MIN_AGE)

    # -- deadlines ------------------------------------------------------------------------
    # Deadlines are numbers checked by the loop's sweeper (see _Sweeper), not timers:
    # arming and cancelling timers several times per request cost a measurable share of a
    # small request (bench/bench_connection_limits.py).
    def check_deadline(self, now: float) -> None:
        """Act on a passed deadline (called by the sweeper)."""
        if self._check_answer(now):
            return
        if self.transport.is_closing():
            return
        if self.awaiting_headers:
            if self._header_deadline is not None and now >= self._header_deadline:
                self._header_deadline = None
                self._reject(
                    408, "request_timeout",
                    f"request headers not received within {self.limits.header_timeout:g} s",
                    "header_timeout")
        elif self.uploading:
            self._check_upload(now)

    def _check_upload(self, now: float) -> None:
        limits = self.limits
        if now >= self._upload_deadline:
            self.cut_upload(
                f"request body not received within the request's deadline of "
                f"{self._upload_seconds:g} s "
                f"({self.upload_received} bytes arrived)", "request_deadline")
        elif self.flow.read_paused:  # the server, not the client, is holding the body back
            credit = now - self._upload_checked
            self.upload_started += credit
            self._upload_last = now
        elif now - self._upload_last >= limits.body_timeout:
            self.cut_upload(f"request body stalled for {limits.body_timeout:g} s",
                            "body_timeout")
        elif now - self.upload_started > limits.allowed_seconds(self.upload_received):
            self.cut_upload(
                f"request body arriving at {self.upload_rate(now):.0f} bytes/s, under the "
                f"minimum of {limits.min_rate:g} bytes/s (after {limits.rate_grace:g} s)",
                "body_too_slow")
        self._upload_checked = now

    def cut_upload(self, message: str, reason: str) -> None:
        """End this upload: a 408 when no answer has started, else a plain close."""
        self.uploading = False
        if self.cycle is not None and not self.cycle.response_started:
            self._reject(408, "request_timeout", message, reason)
        elif not self.transport.is_closing():
            self.transport.close()
            _count_dropped(reason)

    def _check_answer(self, now: float) -> bool:
        """Abort the connection, and return True, when its client has taken none of the
        waiting answer bytes for ``body_timeout`` seconds, or fewer than the minimum rate
        allows (also on a connection already closing: a graceful close waits for them)."""
        unsent = self.transport.get_write_buffer_size()
        if not unsent:
            self._answer = None
            return False
        if self._answer is None:
            self._answer = (now, 0, unsent, now)
            return False
        since, taken, before, last_taken = self._answer
        if unsent < before:  # the client took some (more written since is not counted)
            taken += before - unsent
            last_taken = now
        self._answer = (since, taken, unsent, last_taken)
        if now - last_taken >= self.limits.body_timeout:
            reason = "stopped_reading"
        elif now - since > self.limits.allowed_seconds(taken):
            reason = "answer_too_slow"
        else:
            return False
        _abort(self.transport)
        _count_dropped(reason)
        return True

    def _reject(self, status: int, kind: str, message: str, dropped: str) -> None:
        """Answer ``status`` and close, counted under ``dropped`` (the metric's reason)."""
        if self.transport.is_closing():
            return
        self.transport.write(error_bytes(status, kind, message))
        self.transport.close()
        _count_dropped(dropped)

    # -- parsing ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.awaiting_headers and not self.transport.is_closing():
            # The headers are not complete yet: every byte so far belongs to them. This
            # catches one endless header, which the parser buffers without a callback.
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self.limits.max_header_bytes:
                self._reject_headers()

    def send_400_response(self, msg: str) -> None:
        if self._header_overflow:
            self._reject_headers()
        else:
            super().send_400_response(msg)

    def _reject_headers(self) -> None:
        self._header_deadline = None
        self._reject(431, "request_header_fields_too_large",
                     f"request line and headers over the limit of "
                     f"{self.limits.max_header_bytes} bytes", "headers_too_large")

    def on_headers_complete(self) -> None:
        # Headers that arrived with their end in one read were not counted as they came.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            # Raising from a parser callback makes uvicorn answer through send_400_response.
            self._header_overflow = True
            raise ValueError("request headers over the limit")
        self.awaiting_headers = False
        self._header_deadline = None
        now = time.monotonic()
        self.uploading = True
        self.upload_started = self._upload_last = self._upload_checked = now
        self.upload_received = 0
        self._upload_seconds = request_seconds(self.headers, self.limits.request_timeout)
        self._upload_deadline = now + self._upload_seconds
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.upload_received += len(body)
        self._upload_last = time.monotonic()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self.uploading = False
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            # Answered before its body ended (a 401, a 413): the connection is between
            # requests only now.
            self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.uploading:
            return  # closing, or the request body is still arriving (its bounds hold)
        self._await_headers()

    def _await_headers(self) -> None:
        """Between requests: evictable, and the next headers are due within the timeout."""
        self.awaiting_headers = True
        self.idle_since = time.monotonic()
        self._raw_header_bytes = 0
        self._header_deadline = self.idle_since + self.limits.header_timeout


def _count_dropped(reason: str) -> None:
    # Imported here, in the worker that drops: the supervisor imports this module to build
    # uvicorn's config and must not load prometheus_client (its multiprocess files are the
    # workers').
    from reward_server import telemetry

    telemetry.child(telemetry.CONNECTIONS_DROPPED, reason).inc()


def _drop(transport: Any) -> None:
    """Close ``transport`` now: gracefully when nothing is left to send, else by abort (a
    graceful close would wait for the client to read what is left)."""
    if transport.get_write_buffer_size():
        _abort(transport)
    else:
        transport.close()


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s


def _abort(transport: Any) -> None:
    """Close ``transport`` at once with a reset: its unsent bytes are dropped, those in
    the kernel's send buffer too (a plain close would have the kernel go on sending them,
    megabytes at the slow client's pace, after the server let go)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()


class _Sweeper:
    """Checks the deadlines of one server's connections a few times a second.

    One per server (its uvicorn ``ServerState``, whose ``connections`` it sweeps), started
    by the first connection and stopped once no connection is left; a deadline is noticed
    at most ``interval`` late.
    """

    def __init__(self, server_state: Any, loop: asyncio.AbstractEventLoop,
                 interval: float) -> None:
        self.server_state = weakref.ref(server_state)
        self.connections: set[Any] = server_state.connections
        self.loop = loop
        self.interval = interval
        self.loop.call_later(interval, self.sweep)

    @classmethod
    def ensure(cls, server_state: Any, loop: asyncio.AbstractEventLoop,
               limits: ConnectionLimits) -> None:
        if server_state not in _sweepers:
            interval = min(1.0, limits.header_timeout / 4, limits.body_timeout / 4,
                           max(limits.rate_grace, 0.1) / 4)
            _sweepers[server_state] = cls(server_state, loop, interval)

    def sweep(self) -> None:
        now = time.monotonic()
        for protocol in list(self.connections):
            check = getattr(protocol, "check_deadline", None)
            if check is not None:
                check(now)
        if self.connections:
            self.loop.call_later(self.interval, self.sweep)
        elif (server_state := self.server_state()) is not None:
            _sweepers.pop(server_state, None)


# Keyed by uvicorn's per-server ServerState, weakly: a server that is gone leaves nothing.
_sweepers: weakref.WeakKeyDictionary[Any, _Sweeper] = weakref.WeakKeyDictionary()
