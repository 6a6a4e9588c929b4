"""Shared fixtures: a real ``shop-r1-reward serve`` process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "shopping-steps"


def shopping_steps() -> list[dict]:
    """Every step of ``data/shopping-steps``, file by file in name order."""
    steps: list[dict] = []
    for path in sorted(DATA.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            steps.extend(json.loads(line) for line in handle if line.strip())
    return steps


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in Prometheus exposition ``text`` whose labels
    include ``labels`` (0 when there are none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    """The service's one error shape with ``status`` (and ``param``, when given); its body."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    # "errors" (every invalid field) comes with the 422 of an invalid body only.
    assert set(error) - {"errors"} == {"message", "type", "param", "code"}
    assert error["code"] == status and error["message"]
    if "errors" in error:
        first = error["errors"][0]
        assert status == 422 and set(first) == {"param", "message"}
        assert first["param"] == error["param"]
    if param is not None:
        assert error["param"] == param
    return error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A running server; ``url`` is its base URL, ``log`` its combined output file."""

    process: subprocess.Popen
    url: str
    port: int
    log: Path
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def launch_server(
    log_dir: Path,
    *,
    model: str = "none",
    ready_timeout: float = 180,
    env: dict[str, str] | None = None,
    port: int | None = None,
    **settings: object,
) -> ServerProcess:
    """Start ``python -m reward_server.cli serve`` and wait until /readyz answers 200."""
    port = port or free_port()
    args = [sys.executable, "-m", "reward_server.cli", "serve", "--port", str(port)]
    args += ["--model", model]
    for name, value in settings.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    log = log_dir / f"server-{port}.log"
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            args, cwd=REPO, env=child_env, stdout=sink, stderr=subprocess.STDOUT
        )
    api_key = settings.get("api_key")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, log, api_key, headers)  # type: ignore[arg-type]
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready after {ready_timeout}s:\n{server.output()}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Factory: ``start_server(model="none", api_key=..., ...)``; stopped at teardown."""
    started: list[ServerProcess] = []

    def start(**kwargs: object) -> ServerProcess:
        server = launch_server(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def rules_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One rules-only server (no model) shared by a session's tests."""
    server = launch_server(tmp_path_factory.mktemp("rules-server"))
    yield server
    server.stop()
