"""Slow senders and slow readers against a real ``serve`` process: a body trickled below
the minimum rate, an upload past the request's deadline and an answer read too slowly
are cut; at the connection cap the slowest upload is evicted so a normal client gets in;
a large body at a normal rate is never cut.

The promises are cut or not cut, served or locked out: no test measures a duration.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from reward_server.api.app import create_app
from reward_server.api.connection_limits import ConnectionLimits, LimitedConfig
from reward_server.config import ServerSettings
from tests.conftest import free_port, launch_server, metric_total
from tests.reliability.conftest import FaultState, faulty_scorer
from tests.reliability.responsiveness import NORMAL_ITEM

GRACE_SECONDS = 2
MIN_RATE = 50_000  # bytes/s
TRICKLE_INTERVAL = 0.2  # one byte every 0.2 s: 5 bytes/s, far under MIN_RATE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # The pause bound (30 s) is far above the trickle's pauses: only the minimum rate
    # and the deadline can cut these connections.
    started = launch_server(tmp_path_factory.mktemp("slow-senders"),
                            rate_grace_seconds=GRACE_SECONDS, min_rate_bytes=MIN_RATE,
                            body_timeout_seconds=30, header_timeout_seconds=10)
    yield started
    started.stop()


def dropped(url: str, reason: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return metric_total(text, "reward_connections_dropped_total", reason=reason)


def post_head(length: int, extra: bytes = b"") -> bytes:
    return (b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%s\r\n" % (length, extra))


def trickle(sock: socket.socket, length: int) -> bytes:
    """Send a body of ``length`` bytes one byte per ``TRICKLE_INTERVAL`` until the server
    answers; returns the answer (empty if the whole body went out unanswered)."""
    for _ in range(length):
        readable, _, _ = select.select([sock], [], [], TRICKLE_INTERVAL)
        if readable:
            return read_all(sock)
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            return read_all(sock)
    return b""


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while part := sock.recv(65536):
            answer += part
    return answer


def answered_whole(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    return len(body) >= length


def error_of(answer: bytes, says_close: bool = True) -> dict:
    """The error of an answer in the one shape; ``says_close``: it must carry
    ``connection: close`` (a proxy in front may drop that header and close by itself)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert not says_close or b"connection: close" in head.lower(), head
    return json.loads(body)["error"]


def test_body_under_the_minimum_rate_is_cut_with_408(server):
    before = dropped(server.url, "body_too_slow")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        sock.sendall(post_head(500))
        # 500 bytes at 5 bytes/s: the whole body would take 100 s, its pauses far
        # under the pause bound.
        answer = trickle(sock, 500)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    error = error_of(answer)
    assert (error["type"], error["code"]) == ("request_timeout", 408)
    assert "under the minimum" in error["message"]
    assert dropped(server.url, "body_too_slow") == before + 1


def test_the_request_deadline_covers_its_upload(server):
    before = dropped(server.url, "request_deadline")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        # A deadline shorter than the rate's grace: the deadline is what cuts it.
        sock.sendall(post_head(500, b"x-request-timeout: 0.5\r\n"))
        answer = trickle(sock, 500)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert "deadline of 0.5 s" in error_of(answer)["message"]
    assert dropped(server.url, "request_deadline") == before + 1


def test_answer_read_under_the_minimum_rate_is_dropped(server):
    """A client that reads its 10 MB answer 1 KB at a time, every 0.2 s, never gets it
    all: the server aborts the connection, and counts it."""
    before = dropped(server.url, "answer_too_slow")
    action = {"type": "type_and_submit", "name": "search_input", "text": "w " * 16_000}
    item = {"completion": json.dumps({"rationale": "r", "action": action}),
            "ground_truth": {"type": "terminate"}}
    body = json.dumps({"items": [item] * 320}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(post_head(len(body)) + body)
        answer, cut = b"", False
        while not answered_whole(answer):
            try:
                part = sock.recv(1024)
            except ConnectionResetError:
                part = b""
            if not part:  # the server closed it before the answer was whole
                cut = True
                break
            answer += part
            time.sleep(TRICKLE_INTERVAL)  # about 5 KB/s, far under MIN_RATE
        received = len(answer)
    assert cut, f"read {received} bytes without being cut"
    assert dropped(server.url, "answer_too_slow") == before + 1


def test_the_slowest_upload_is_evicted_at_the_cap_so_a_normal_client_gets_in(start_server):
    """Every connection the server allows is a slow upload (its rate and deadline far
    away): a probe and a real request are still served, each evicting one slow upload,
    which gets a 408 saying why."""
    server = start_server(max_connections=4, rate_grace_seconds=600, min_rate_bytes=1,
                          body_timeout_seconds=600, default_timeout_seconds=600)
    slow = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.settimeout(30)
            sock.sendall(post_head(10_000) + b"{")
            slow.append(sock)
        # A 100 Continue-free way to know each upload is under way: every socket is
        # still open, nothing answered yet.
        assert not select.select(slow, [], [], 0.5)[0]
        assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200
        response = httpx.post(server.url + "/v1/rewards", json={"items": [NORMAL_ITEM]},
                              timeout=30)
        assert response.status_code == 200
        readable, _, _ = select.select(slow, [], [], 30)
        evicted = [read_all(sock) for sock in readable]
    finally:
        for sock in slow:
            sock.close()
    assert evicted and all(answer.startswith(b"HTTP/1.1 408 ") for answer in evicted)
    assert "evicted at the connection cap" in error_of(evicted[0])["message"]
    assert dropped(server.url, "evicted_upload") >= 1


def test_large_body_at_a_normal_rate_is_never_cut(rules_server):
    """A 16 MB batch sent in 256 KiB pieces against the default limits: all 4,096 items
    are scored."""
    completion = json.dumps({"rationale": "r" * 3900, "action": {"type": "terminate"}})
    body = json.dumps({"items": [
        {"id": i, "completion": completion, "ground_truth": {"type": "terminate"}}
        for i in range(4096)
    ]}).encode()
    assert len(body) > 16_000_000

    def pieces():
        for start in range(0, len(body), 256 * 1024):
            yield body[start:start + 256 * 1024]

    response = httpx.post(rules_server.url + "/v1/rewards", content=pieces(), timeout=300,
                          headers={"content-type": "application/json",
                                   "content-length": str(len(body))})
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert [r["id"] for r in results] == list(range(4096))


def test_refused_with_retry_after_only_when_every_connection_is_past_its_upload():
    """Both allowed connections hold a request the (hung) scoring backend has not
    answered: nothing is idle or uploading, so a third connection is refused with 503,
    which like every 503 of the service carries Retry-After. The app and uvicorn are the
    production ones; only the backend under the scorer is staged to hang."""
    state = FaultState(mode="hang")
    app = create_app(ServerSettings(model="none"), scorer=faulty_scorer(state))
    port = free_port()
    config = LimitedConfig(app, host="127.0.0.1", port=port, log_level="warning",
                           connection_limits=ConnectionLimits(max_connections=2))
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"items": [NORMAL_ITEM], "self_certainty_source": "model"}).encode()
    busy = []
    try:
        while not uvicorn_server.started:
            time.sleep(0.05)
        before = dropped(url, "connection_cap")
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.settimeout(30)
            sock.sendall(post_head(len(body)) + body)
            busy.append(sock)
        while state.batches < 1:  # the first request's batch is in the hung backend
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(30)
            answer = read_all(extra)
    finally:
        state.mode = "ok"
        state.release.set()
        for sock in busy:
            sock.close()
    head_lines = answer.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    try:
        assert head_lines[0].startswith(b"http/1.1 503 "), answer[:300]
        assert any(line.startswith(b"retry-after: ") for line in head_lines), answer[:300]
        assert error_of(answer)["type"] == "overloaded"
        assert dropped(url, "connection_cap") == before + 1
    finally:
        uvicorn_server.should_exit = True
        thread.join(15)


def test_the_app_bounds_uploads_behind_a_server_that_does_not():
    """The Ray entries' case: plain uvicorn (no connection limits) in front of the app,
    which bounds the upload itself; its 408 closes the connection, so the trickle does not
    go on holding it."""
    from tests.reliability.conftest import ThreadServer

    settings = ServerSettings(model="none", app_bounds_uploads=True,
                              rate_grace_seconds=GRACE_SECONDS, min_rate_bytes=MIN_RATE)
    server = ThreadServer(create_app(settings)).start()
    try:
        before = dropped(server.url, "body_too_slow")
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(30)
            sock.sendall(post_head(500))
            answer = trickle(sock, 500)
            assert sock.recv(1) == b""  # closed by the server, not left to the trickle
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert "under the minimum" in error_of(answer)["message"]
        assert dropped(server.url, "body_too_slow") == before + 1
    finally:
        server.stop()
