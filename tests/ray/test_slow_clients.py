"""Slow clients against both Ray Serve entries, as ``shop-r1-reward ray-serve`` sets them
up: Serve's Python proxy (the session cluster) and ``--serve-proxy haproxy`` (a local
cluster of its own, started by the command).

* A trickled body is cut with 408 on both (the app's own upload bounds), and the
  connection closes; a large body at a normal rate passes.
* Ray's HAProxy refuses a header block over ``--max-header-bytes``; Serve's proxy takes
  a 1 MiB one, and deploy/haproxy/front.cfg in front of it refuses it and cuts trickled
  headers.

No test measures a duration: cut or not cut, served or locked out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.ray.conftest import deploy, undeploy
from tests.reliability.haproxy_front import front
from tests.reliability.responsiveness import NORMAL_ITEM
from tests.reliability.test_slow_senders import error_of, post_head, read_all, trickle

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "slow-clients", "/slow"
KEY = "slow-clients-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# The service's bounds, tightened so that a trickle is cut within seconds.
BOUNDS = {"rate_grace_seconds": 2, "min_rate_bytes": 50_000}


def settings(**extra: Any) -> dict[str, Any]:
    return {"model": "none", "api_key": KEY, "ingress_num_cpus": 0, **BOUNDS, **extra}


@pytest.fixture(scope="module")
def python_proxy(ray_cluster) -> Iterator[tuple[str, int]]:
    """(base URL, port) of the application behind Serve's Python proxy."""
    from reward_server.ray_serve.settings import split_settings

    server, cluster = split_settings(settings())
    yield deploy(ray_cluster, APP, PREFIX, server, cluster), ray_cluster.http_port
    undeploy(APP)


@pytest.fixture(scope="module")
def haproxy_entry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(base URL, port) of ``ray-serve --serve-proxy haproxy`` on a local cluster of its
    own (RAY_ADDRESS=local: never the session's cluster)."""
    port = free_port()
    args = [sys.executable, "-m", "reward_server.cli", "ray-serve", "--serve-proxy", "haproxy",
            "--port", str(port), "--num-cpus", "2"]
    for name, value in settings().items():
        args += ["--" + name.replace("_", "-"), str(value)]
    log = tmp_path_factory.mktemp("haproxy-entry") / "ray-serve.log"
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(REPO)}
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, log)
        yield url, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError(f"ray-serve exited:\n{log.read_text()[-3000:]}")
        if b"ready on" in log.read_bytes():
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        threading.Event().wait(0.5)
    raise RuntimeError(f"ray-serve never got ready:\n{log.read_text()[-3000:]}")


def assert_trickled_body_is_cut(port: int, prefix: str) -> None:
    head = post_head(500, b"authorization: Bearer " + KEY.encode() + b"\r\n")
    head = head.replace(b"POST /v1/rewards", b"POST " + prefix.encode() + b"/v1/rewards")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        sock.sendall(head)
        answer = trickle(sock, 500)
        assert sock.recv(1) == b""  # closed: the rest of the trickle is not read
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    # HAProxy drops the answer's connection header (hop-by-hop) and closes by itself.
    assert "under the minimum" in error_of(answer, says_close=False)["message"]


def assert_large_body_passes(url: str) -> None:
    body = httpx.Request("POST", url, json={"items": [NORMAL_ITEM] * 4096}).content
    response = httpx.post(url + "/v1/rewards", content=body, timeout=240,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["results"]) == 4096


def test_python_proxy_cuts_a_trickled_body_and_passes_a_large_one(python_proxy):
    url, port = python_proxy
    assert_trickled_body_is_cut(port, PREFIX)
    assert_large_body_passes(url)


def test_haproxy_entry_cuts_a_trickled_body_and_passes_a_large_one(haproxy_entry):
    url, port = haproxy_entry
    assert_trickled_body_is_cut(port, "")
    assert_large_body_passes(url)


def header_bomb(port: int, path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nhost: x\r\nx-padding: "
                         + b"a" * (1024 * 1024) + b"\r\nconnection: close\r\n\r\n")
        return read_all(sock)


def test_haproxy_entry_refuses_a_header_bomb(haproxy_entry):
    _, port = haproxy_entry
    assert header_bomb(port, b"/healthz").startswith(b"HTTP/1.1 400 ")


def test_the_front_bounds_what_serves_python_proxy_does_not(python_proxy):
    _, port = python_proxy
    path = PREFIX.encode() + b"/healthz"
    # Serve's proxy alone: a 1 MiB header block is served.
    assert header_bomb(port, path).startswith(b"HTTP/1.1 200 ")
    with front(port) as front_port:
        assert header_bomb(front_port, path).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", front_port)) as sock:
            sock.settimeout(60)
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n")
            assert trickle(sock, 500).startswith(b"HTTP/1.1 408 ")  # a header never ending
