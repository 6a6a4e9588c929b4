"""A staged HTTP server for fault injection (429/503/slow/short replies), proxying to a
real reward service for everything it is not told to break."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import metric_total

Reply = tuple[int, dict[str, str], bytes]
Script = Callable[["Seen"], Reply | None]


@dataclass
class Seen:
    """One request the staged server received (``number`` counts from 1)."""

    number: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StagedServer:
    url: str
    upstream: str | None
    script: Script
    seen: list[Seen] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def forward(self, request: Seen) -> Reply:
        assert self.upstream, "nothing to proxy to"
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        response = httpx.request(
            request.method,
            self.upstream + request.path,
            content=request.body,
            headers=headers,
            timeout=60,
        )
        return response.status_code, {"Content-Type": "application/json"}, response.content


_FORWARDED = {"content-type", "authorization", "x-request-timeout"}


def _handler(staged: StagedServer) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                request = Seen(
                    len(staged.seen) + 1, self.command, self.path, dict(self.headers.items()), body
                )
                staged.seen.append(request)
                staged.times.append(time.monotonic())
            reply = staged.script(request) or staged.forward(request)
            status, headers, content = reply
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _serve

    return Handler


@pytest.fixture
def staged_server() -> Iterator[Callable[..., StagedServer]]:
    """Factory: ``staged_server(script, upstream=url)``; ``script(seen)`` returns a reply
    ``(status, headers, body)`` or None to proxy the request to ``upstream``."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script, upstream: str | None = None) -> StagedServer:
        staged = StagedServer("", upstream, script)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(staged))
        server.daemon_threads = True
        staged.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return staged

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def error_reply(status: int, message: str, retry_after: str | None = None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"error": {"message": message, "type": "staged", "param": None, "code": status}}
    return status, headers, json.dumps(body).encode()


def request_count(url: str, route: str = "/v1/rewards", status: str | None = None) -> int:
    """Requests the real server counted (its Prometheus ``reward_request_seconds_count``)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    labels = {"route": route, **({"status": status} if status else {})}
    return int(metric_total(text, "reward_request_seconds_count", **labels))
