"""The upload bounds of :mod:`~reward_server.api.connection_limits`, kept by the app itself
where the HTTP server in front is not this project's (the Ray Serve entries).

A request body must arrive within the request's deadline (``X-Request-Timeout`` capped
by ``--default-timeout-seconds``, counted from when the app sees the request), at the
minimum rate once the grace has passed (allowed time ``grace + received / min_rate``),
and with no pause of ``--body-timeout-seconds``. Each receive waits only until the
nearest of the three; past it the answer is 408 in the one error shape with
``Connection: close``, so that the server in front (Serve's proxy, or the replica's own
server behind HAProxy) closes the connection instead of reading the rest of a trickle.
The app then sees a disconnected client. Counted in
``reward_connections_dropped_total{reason}`` like the single process's cuts.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reward_server import telemetry
from reward_server.api.connection_limits import ConnectionLimits, request_seconds
from reward_server.api.errors import error_response


class UploadLimitMiddleware:
    """Pure ASGI: the body of each request within the bounds of the module docstring."""

    def __init__(self, app: ASGIApp, limits: ConnectionLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        started = time.monotonic()
        seconds = request_seconds(scope["headers"], limits.request_timeout)
        received = 0
        body_done = False
        cut = False

        async def bounded_receive() -> Message:
            nonlocal received, body_done, cut
            if cut:
                return {"type": "http.disconnect"}
            if body_done:  # only a disconnect can come now: no bound
                return await receive()
            now = time.monotonic()
            bounds = (
                (started + seconds - now, "request_deadline",
                 f"request body not received within the request's deadline of {seconds:g} s"
                 f" ({received} bytes arrived)"),
                (limits.body_timeout, "body_timeout",
                 f"request body stalled for {limits.body_timeout:g} s"),
                (started + limits.allowed_seconds(received) - now, "body_too_slow",
                 f"request body arriving at {received / max(now - started, 1e-3):.0f} "
                 f"bytes/s, under the minimum of {limits.min_rate:g} bytes/s "
                 f"(after {limits.rate_grace:g} s)"),
            )
            wait, reason, message = min(bounds, key=lambda bound: bound[0])
            try:
                event = await asyncio.wait_for(receive(), max(wait, 0.0))
            except TimeoutError:
                cut = True
                telemetry.child(telemetry.CONNECTIONS_DROPPED, reason).inc()
                response = error_response(408, "request_timeout", message,
                                          headers={"Connection": "close"})
                await response(scope, receive, send)
                return {"type": "http.disconnect"}
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                body_done = not event.get("more_body", False)
            return event

        async def guarded_send(message: Message) -> None:
            if not cut:  # after the 408, whatever the app answers is dropped
                await send(message)

        await self.app(scope, bounded_receive, guarded_send)
