"""Load proof, CI size: the harness of
:mod:`tests.reliability.load` with ``CI_PLAN`` against a real server process.

2,000 rules-only one-item requests from 256 connections, 20 batches of 1,024 items, and
(with the embedded model installed) 16 one-item model requests mixed with 400 rules
requests. Zero lost, mismatched or reordered results; bounded memory growth.
Full size: ``python -m tests.reliability.load --full`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from reward_server.certainty import embedded_model_available
from tests.conftest import launch_server
from tests.reliability.conftest import SMALL_QUEUE
from tests.reliability.load import CI_PLAN, run_load

# Bounds on the server's RSS (MiB). Round 2 repeats round 1's traffic: a leak would show
# there; after warm-up the first model batches still grow torch's allocator caches.
ROUND2_GROWTH_MIB = 32
AFTER_WARMUP_GROWTH_MIB = 256


@pytest.fixture
def load_server(request, tmp_path):
    """The shared model server (its 8-item queue takes CI_PLAN's 8 model connections
    without a refusal), or a rules-only one where the embedded model is not installed."""
    if embedded_model_available():
        yield request.getfixturevalue("small_queue_model_server")
        return
    server = launch_server(tmp_path, model="none", log_level="warning")
    yield server
    server.stop()


def test_load_ci_size(load_server) -> None:
    model = embedded_model_available()
    assert CI_PLAN.model_concurrency <= SMALL_QUEUE
    report = asyncio.run(run_load("127.0.0.1", load_server.port, load_server.process.pid,
                                  CI_PLAN, model))
    print(json.dumps(report, indent=1))
    assert report["lost"] == 0, report
    assert report["mismatched"] == 0, report
    assert report["reordered"] == 0, report
    assert report["one_item"]["requests"] == CI_PLAN.requests
    assert report["batches"]["items"] == CI_PLAN.batches * CI_PLAN.batch_size
    if model:
        # Every model item whose format passed came back with a value and rules + alpha*s.
        assert report["mixed_model"]["model_items_checked"] > CI_PLAN.model_requests // 2
    assert report["rss_mib"]["growth_round2"] <= ROUND2_GROWTH_MIB, report["rss_mib"]
    assert report["rss_mib"]["growth_after_warmup"] <= AFTER_WARMUP_GROWTH_MIB, report["rss_mib"]
