"""A reward service started for a training run: ``shop-r1-reward serve`` in a child
process on a free loopback port, stopped when the run ends."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from client import RewardClient, RewardClientError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_service(
    model: str = "none", log_path: Path | None = None, timeout: float = 300.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Yield the URL of a ready service scoring with ``model`` (``none``: rules only,
    which is all a run whose self-certainty comes from the policy needs)."""
    port = free_port()
    command = [
        sys.executable, "-m", "reward_server.cli", "serve", "--model", model,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra_args,
    ]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def _wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Wait for ``/readyz``, failing at once if the service exits first."""
    deadline = time.monotonic() + timeout
    with RewardClient(url) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the reward service exited with {process.returncode}")
            try:
                client.wait_ready(timeout=2.0)
                return
            except (RewardClientError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
