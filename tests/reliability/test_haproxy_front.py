"""deploy/haproxy/front.cfg, run by a real HAProxy in front of an entry that bounds
nothing itself (plain uvicorn serving the production app, as Serve's Python proxy is):
a header bomb is refused (400), trickled headers and a trickled small body are cut (408),
a normal request and a large body pass. The front's own 503 is the service's one error
shape; its 400 and 408 are HAProxy's pages (see the configuration's header).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from reward_server.api.app import create_app
from reward_server.api.connection_limits import error_bytes
from reward_server.config import ServerSettings
from tests.conftest import REPO, free_port
from tests.reliability.conftest import ThreadServer
from tests.reliability.haproxy_front import front
from tests.reliability.responsiveness import NORMAL_ITEM
from tests.reliability.test_slow_senders import error_of, post_head, read_all, trickle

# What each of the front's error files says: it must be the builder's output, byte for
# byte (regenerate the files from this when a message changes).
FRONT_ERRORS = {
    503: ("overloaded", "the service is unavailable or at its connection limit; retry shortly"),
}


@pytest.fixture(scope="module")
def unbounded_entry():
    server = ThreadServer(create_app(ServerSettings(model="none"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front_port(unbounded_entry):
    with front(unbounded_entry.port) as port:
        yield port


@pytest.mark.parametrize("status", sorted(FRONT_ERRORS))
def test_error_files_are_the_services_error_shape(status):
    shipped = (Path(REPO) / "deploy" / "haproxy" / "errors" / f"{status}.http").read_bytes()
    assert shipped == error_bytes(status, *FRONT_ERRORS[status])


def test_normal_and_large_requests_pass(front_port):
    url = f"http://127.0.0.1:{front_port}"
    assert httpx.get(url + "/healthz", timeout=30).status_code == 200
    body = json.dumps({"items": [NORMAL_ITEM] * 4096}).encode()
    assert len(body) > 1_000_000
    response = httpx.post(url + "/v1/rewards", content=body, timeout=120,
                          headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 4096


def test_header_bomb_is_refused(unbounded_entry, front_port):
    headers = {"x-padding": "a" * (1024 * 1024)}
    # The entry alone takes a 1 MiB header; the front refuses it.
    assert httpx.get(unbounded_entry.url + "/healthz", headers=headers,
                     timeout=30).status_code == 200
    with socket.create_connection(("127.0.0.1", front_port)) as sock:
        sock.settimeout(30)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 70_000
                     + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]


def test_trickled_headers_and_a_trickled_body_are_cut(front_port):
    with socket.create_connection(("127.0.0.1", front_port)) as headers_sock, \
            socket.create_connection(("127.0.0.1", front_port)) as body_sock:
        headers_sock.settimeout(30)
        body_sock.settimeout(30)
        headers_sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\n")
        body_sock.sendall(post_head(500))
        # One byte every 0.2 s on each: a header line that never ends, a 500-byte body
        # that would take 100 s.
        header_answer = trickle(headers_sock, 500)
        body_answer = trickle(body_sock, 500)
    for answer in (header_answer, body_answer):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]


def test_front_without_a_live_entry_answers_503_in_the_error_shape():
    with front(free_port()) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:300]
    assert b"retry-after: 1" in answer.lower()
    assert error_of(answer)["type"] == "overloaded"
