"""The uvicorn internals ``reward_server/api/connection_limits.py`` relies on are still
there, with the meaning it gives them, in the installed uvicorn.

The protocol subclasses uvicorn's ``HttpToolsProtocol`` and reads its per-connection
state; pyproject.toml pins uvicorn to the series this was written against. When a new
series moves any of it, these tests name what moved, before the limits silently stop
holding.
"""

from __future__ import annotations

import inspect
import re
import socket
import threading
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import uvicorn
from packaging.requirements import Requirement
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from reward_server.api.connection_limits import (
    ConnectionLimits,
    LimitedConfig,
    LimitedHttpToolsProtocol,
)
from tests.conftest import REPO, free_port

# Methods of HttpToolsProtocol that LimitedHttpToolsProtocol overrides and calls through.
OVERRIDDEN = ("connection_made", "data_received", "send_400_response", "on_headers_complete",
              "on_body", "on_message_complete", "on_response_complete")


def test_installed_uvicorn_is_in_the_pinned_series():
    pyproject = (Path(REPO) / "pyproject.toml").read_text()
    (line,) = re.findall(r'"(uvicorn\[standard\][^"]*)"', pyproject)
    requirement = Requirement(line)
    assert requirement.specifier.contains(version("uvicorn")), (
        f"uvicorn {version('uvicorn')} is outside the pin {requirement.specifier}: run "
        "this module against it, then move the pin")


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_the_overridden_methods_keep_their_signatures(name):
    ours = inspect.signature(getattr(LimitedHttpToolsProtocol, name))
    theirs = inspect.signature(getattr(HttpToolsProtocol, name))
    assert list(ours.parameters) == list(theirs.parameters), (
        f"uvicorn {version('uvicorn')} changed HttpToolsProtocol.{name}{theirs}")


def test_the_state_read_mid_upload_is_where_it_was():
    """A real server with the limits, a request whose body is half sent: the protocol's
    view of it (headers, URL, cycle, flow control, the server's connection set) is what
    connection_limits.py reads."""
    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = uvicorn.Server(LimitedConfig(app, host="127.0.0.1", port=port, log_level="warning",
                                          connection_limits=ConnectionLimits()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(30)
            sock.sendall(b"POST /upload?x=1 HTTP/1.1\r\nhost: x\r\nx-request-timeout: 7\r\n"
                         b"content-length: 10\r\n\r\n12345")
            protocol = wait_for_upload(server, received=5)
            assert protocol.connections is server.server_state.connections
            assert protocol.url == b"/upload?x=1"
            assert (b"x-request-timeout", b"7") in protocol.headers
            assert isinstance(protocol.flow, FlowControl)
            assert protocol.flow.read_paused in (True, False)
            assert isinstance(protocol.cycle, RequestResponseCycle)
            assert protocol.cycle.more_body is True
            assert protocol.cycle.response_started is False
            assert protocol.cycle.response_complete is False
            assert protocol.transport.get_write_buffer_size() == 0
            sock.sendall(b"67890")
            assert sock.recv(4096).startswith(b"HTTP/1.1 204 ")
            assert protocol.cycle.response_complete is True
            assert protocol.uploading is False and protocol.awaiting_headers is True
    finally:
        server.should_exit = True
        thread.join(15)


def wait_for_upload(server: uvicorn.Server, received: int) -> LimitedHttpToolsProtocol:
    for _ in range(600):
        for protocol in list(server.server_state.connections):
            assert isinstance(protocol, LimitedHttpToolsProtocol), type(protocol)
            if protocol.uploading and protocol.upload_received == received:
                return protocol
        time.sleep(0.05)
    raise AssertionError("the server never reported the upload under way")
