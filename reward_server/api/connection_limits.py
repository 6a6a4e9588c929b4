"""Connection-level limits that uvicorn's HTTP/1.1 protocol does not enforce by itself.

uvicorn (httptools) reads request headers of any size and waits for them, and for a
request body, without a time limit; a single connection can then hold hundreds of MB, and
a few hundred slow ones (slowloris) hold the process's file descriptors. This protocol is
uvicorn's own ``HttpToolsProtocol`` with four limits added:

* **header size**: the request line plus headers may take ``max_header_bytes``; past it
  the answer is 431 and the connection closes. Bytes are counted as they arrive, so a
  single endless header is cut off within one socket read of the limit.
* **header timeout**: from the moment a connection opens, or a new request on it begins,
  its headers must be complete within ``header_timeout`` seconds, else 408 and close.
* **body timeout**: while a request body is being received, no pause between two pieces
  of it may last ``body_timeout`` seconds (time the server itself stopped reading, to
  apply back-pressure, does not count), else 408 and close. The same bound holds for the
  other direction: a connection with answer bytes still unsent that the client has read
  none of for ``body_timeout`` seconds is dropped (aborted: closing it gracefully would
  wait for that client forever, holding its socket and its unsent answer).
* **connection cap**: at ``max_connections`` open connections a new one evicts the
  oldest connection that is not in the middle of a request (waiting for headers, or
  idle between requests; one with unsent bytes is aborted, not closed, so that it goes);
  only when every connection is busy is the new one refused (503 with Retry-After).
  Probes and real requests therefore get in while slow connections are shed.

Timeouts are deadlines that one sweeper per event loop checks a few times a second (at
most a second late), not a timer per connection and request.

The limits travel on :class:`LimitedConfig` (a ``uvicorn.Config``), so worker processes
receive them with the rest of uvicorn's configuration.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import weakref
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Shells and kernels default to 1,024 open files; leave room for the process's own.
_MIN_CONNECTIONS = 16
# Retry-After of a connection refused at the cap: the smallest hint, since a connection
# frees as soon as any request in flight ends.
CONNECTION_RETRY_AFTER = 1


def default_max_connections() -> int:
    """Three quarters of the soft open-file limit: the rest stays for the process's own
    files, model weights and pipes, so ``accept`` never fails with EMFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65_536
    return max(_MIN_CONNECTIONS, soft * 3 // 4)


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024


class LimitedConfig(uvicorn.Config):
    """``uvicorn.Config`` that carries :class:`ConnectionLimits` to the protocol."""

    def __init__(self, *args: Any, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("http", LimitedHttpToolsProtocol)
        super().__init__(*args, **kwargs)
        self.connection_limits = connection_limits


def _error_response(status: int, reason: bytes, kind: str, message: str) -> bytes:
    body = json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}
    ).encode()
    # A 503 is transient: say when to come back, as every other 503 of the service does.
    retry_after = b"retry-after: %d\r\n" % CONNECTION_RETRY_AFTER if status == 503 else b""
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"%sconnection: close\r\n\r\n" % (status, reason, len(body), retry_after)
    )
    return head + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", ConnectionLimits())
        self.awaiting_headers = True  # between requests or before the first one
        self.idle_since = time.monotonic()
        self._raw_header_bytes = 0
        self._header_overflow = False
        self._deadline: float | None = None  # of the headers while awaiting_headers, else the body
        # (bytes waiting to be sent, when the client last took some) while any are waiting
        self._unsent: tuple[int, float] | None = None

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._reject(503, b"Service Unavailable", "overloaded",
                         "too many open connections; retry shortly", "connection_cap")
            return
        _Sweeper.ensure(self.server_state, self.loop, self.limits)
        self._await_headers()

    def _evict_one(self) -> bool:
        """Close the oldest other connection that is not in a request; False if none."""
        idle = [
            protocol for protocol in self.connections
            if protocol is not self and getattr(protocol, "awaiting_headers", False)
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda protocol: protocol.idle_since)
        _drop(oldest.transport)
        _count_dropped("evicted")
        return True

    # -- deadlines ------------------------------------------------------------------------
    # A deadline is a number checked by the loop's sweeper (see _Sweeper), not a timer:
    # arming and cancelling timers several times per request cost a measurable share of a
    # small request (bench/bench_connection_limits.py).
    def _expect(self, seconds: float | None) -> None:
        """The next bytes are due within ``seconds`` (None: nothing is due)."""
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def check_deadline(self, now: float) -> None:
        """Act on a passed deadline (called by the sweeper)."""
        if self._client_stopped_reading(now):
            self.transport.abort()
            _count_dropped("stopped_reading")
            return
        if self._deadline is None or now < self._deadline or self.transport.is_closing():
            return
        if self.awaiting_headers:
            self._expect(None)
            self._reject(408, b"Request Timeout", "request_timeout",
                         f"request headers not received within {self.limits.header_timeout:g} s",
                         "header_timeout")
        elif self.flow.read_paused:  # the server, not the client, is holding the body back
            self._expect(self.limits.body_timeout)
        else:
            self._expect(None)
            if self.cycle is not None and not self.cycle.response_started:
                self._reject(408, b"Request Timeout", "request_timeout",
                             f"request body stalled for {self.limits.body_timeout:g} s",
                             "body_timeout")
            else:
                self.transport.close()
                _count_dropped("body_timeout")

    def _client_stopped_reading(self, now: float) -> bool:
        """Whether bytes have been waiting to be sent, none of them taken by the client, for
        ``body_timeout`` seconds (also on a connection already closing: a graceful close
        waits for them)."""
        unsent = self.transport.get_write_buffer_size()
        if not unsent:
            self._unsent = None
            return False
        if self._unsent is None or unsent < self._unsent[0]:  # the client took some
            self._unsent = (unsent, now)
            return False
        self._unsent = (unsent, self._unsent[1])
        return now - self._unsent[1] >= self.limits.body_timeout

    def _reject(self, status: int, reason: bytes, kind: str, message: str, dropped: str) -> None:
        """Answer ``status`` and close, counted under ``dropped`` (the metric's reason)."""
        if self.transport.is_closing():
            return
        self.transport.write(_error_response(status, reason, kind, message))
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
        self._expect(None)
        self._reject(431, b"Request Header Fields Too Large", "request_header_fields_too_large",
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
        self._expect(self.limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._expect(self.limits.body_timeout)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._expect(None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or (self.cycle is not None and self.cycle.more_body):
            return  # closing, or the request body is still arriving (its timer runs)
        self._await_headers()

    def _await_headers(self) -> None:
        """Between requests: evictable, and the next headers are due within the timeout."""
        self.awaiting_headers = True
        self.idle_since = time.monotonic()
        self._raw_header_bytes = 0
        self._deadline = self.idle_since + self.limits.header_timeout


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
        transport.abort()
    else:
        transport.close()


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
            interval = min(1.0, limits.header_timeout / 4, limits.body_timeout / 4)
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
