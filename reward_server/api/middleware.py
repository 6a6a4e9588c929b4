"""Pure ASGI middleware: request metrics, an answer for cancelled requests, bearer-key
auth, request body limit.

Pure ASGI (not BaseHTTPMiddleware) so streaming bodies are counted as they arrive and a
body over the limit is refused before it is read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reward_server import telemetry
from reward_server.api.errors import error_response


class _StatusTrackingSend:
    """``send`` that remembers the status of the response once it has started."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class MetricsMiddleware:
    """Latency by route template and status, and the in-flight gauge.

    The router names the route it matched; a request refused before routing (401 from
    auth, 413 from the body limit) is labelled with its path when that is the path of one
    of ``routes`` (the app's, read when needed: routes added later count; none has path
    parameters), else ``unmatched``.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        tracked = _StatusTrackingSend(send)
        telemetry.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, tracked)
        finally:
            telemetry.IN_FLIGHT.dec()
            label = getattr(scope.get("route"), "path", None) or self._unrouted_label(scope)
            status = str(tracked.status or 500)  # no answer at all counts as a failure
            latency = telemetry.child(telemetry.REQUEST_SECONDS, label, status)
            latency.observe(time.perf_counter() - started)

    def _unrouted_label(self, scope: Scope) -> str:
        path = _app_path(scope)
        known = any(getattr(route, "path", None) == path for route in self.routes)
        return path if known else "unmatched"


class CancelledRequestMiddleware:
    """A request the server cancels before answering it (its graceful-shutdown time ran
    out) gets a 503 in the one error shape with Retry-After, so the client knows to retry
    elsewhere or later, instead of uvicorn's plain-text 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _StatusTrackingSend(send)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if tracked.status is None:
                response = error_response(
                    503, "shutting_down",
                    "the server stopped before this request finished; retry it",
                    retry_after=1,
                )
                with contextlib.suppress(Exception):  # the client may be gone already
                    await response(scope, receive, send)
            raise


def _app_path(scope: Scope) -> str:
    """The request path below the app's mount point: an app served under a prefix (a
    proxy's ``root_path``, a Ray Serve route prefix) sees ``root_path + path``."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <key>`` except on the public probe paths.

    Both sides are hashed before ``hmac.compare_digest`` so the comparison takes the same
    time whatever the presented key's length or common prefix.
    """

    def __init__(self, app: ASGIApp, api_key: str, public_paths: Iterable[str]) -> None:
        self.app = app
        self.expected = _digest(api_key.encode())
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _app_path(scope) in self.public_paths:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        presented = token.strip() if scheme.lower() == b"bearer" else b""
        if not hmac.compare_digest(_digest(presented), self.expected):
            response = error_response(401, "authentication_error", "missing or invalid API key")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit (nothing read) or, for a
    streamed body, as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refuse(scope, receive, send)
                    # The app sees a disconnected client; whatever it answers is dropped.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        if declared is not None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large",
            f"request body over the limit of {self.max_bytes} bytes", "body",
        )
        await response(scope, receive, send)
