"""The Ray Serve application with a model, started the way a user starts it
(``shop-r1-reward ray-serve --ray-address ...`` joining the session's cluster): two
model replicas behind prompt-hash routing.

The model is a 2-layer random Llama saved as a model folder (the real transformers
backend, in milliseconds), so the tests exercise every path of the model deployment in
seconds: agreement with the single-process service, group affinity and one prompt
encoding per group, reload on every replica, a replica killed under load, and a drain
on SIGTERM. Self-certainty values are compared to 1e-6 relative: batches shaped
differently round float32 differently, between two runs of the single-process service
too; everything else is compared exactly.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.ray.conftest import (
    API_KEY,
    RayCluster,
    post_each,
    single_process,
    stats_of,
    wait_until,
)
from tests.ray.workload import grpo_groups, save_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.ray]

APP, PREFIX = "model", "/model"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Members of a group sent as separate requests arrive over about a second here; the
# model replica holds a prompt's first call this long for the others.
GROUP_WINDOW_MS = 3000


@dataclass
class ModelApp:
    url: str
    process: subprocess.Popen
    log: Path
    models: Path  # the reload root: tiny-1 (started with), tiny-2

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _server(model_dir: Path, root: Path) -> Any:
    from reward_server.config import ServerSettings

    return ServerSettings(model=str(model_dir), api_key=API_KEY, reload_root=str(root),
                          max_batch_tokens=65536)


@pytest.fixture(scope="module")
def model_app(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("models")
    save_tiny_model(root / "tiny-1", seed=1)
    save_tiny_model(root / "tiny-2", seed=2)
    log = root.parent / "ray-serve.log"
    args = [
        sys.executable, "-m", "reward_server.cli", "ray-serve",
        "--ray-address", ray_cluster.address, "--port", str(ray_cluster.http_port),
        "--app-name", APP, "--route-prefix", PREFIX,
        "--model", str(root / "tiny-1"), "--api-key", API_KEY, "--reload-root", str(root),
        "--max-batch-tokens", "65536", "--group-window-ms", str(GROUP_WINDOW_MS),
        "--model-min-replicas", "2", "--model-max-replicas", "2",
        "--ingress-min-replicas", "1", "--ingress-max-replicas", "1",
        "--ingress-num-cpus", "0", "--model-num-cpus", "0",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
    app = ModelApp(ray_cluster.url(PREFIX), process, log, root)
    wait_until(lambda: "ready on" in app.output() or process.poll() is not None, 300,
               "ready")
    assert process.poll() is None, app.output()
    yield app
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(120)


def _same(got: dict, want: dict) -> bool:
    """Equal, but self-certainty to float32 rounding and the reward that carries it."""
    got, want = dict(got), dict(want)
    got_parts, want_parts = dict(got.pop("components")), dict(want.pop("components"))
    s_got, s_want = got_parts.pop("self_certainty"), want_parts.pop("self_certainty")
    r_got, r_want = got.pop("reward"), want.pop("reward")
    if got != want or got_parts != want_parts or (s_got is None) != (s_want is None):
        return False
    if s_got is not None and not math.isclose(s_got, s_want, rel_tol=1e-6):
        return False
    return math.isclose(r_got, r_want, rel_tol=1e-6, abs_tol=1e-9)


def _as_item_of(result: dict, index: int) -> dict:
    return {**result, "index": index}


GROUPS = grpo_groups(25, 8, seed=11)
ITEMS = [item for group in GROUPS for item in group]


async def test_model_results_equal_the_single_process_service(model_app: ModelApp) -> None:
    """200 real steps (25 prompts x 8): one batched request, and the same items each in
    its own request in random order, equal the single-process service's answer."""
    async with single_process(_server(model_app.models / "tiny-1", model_app.models)) as ref:
        want = (await ref.post("/v1/rewards", json={"items": ITEMS}, headers=AUTH)).json()
    async with httpx.AsyncClient(base_url=model_app.url, headers=AUTH, timeout=240) as client:
        got = (await client.post("/v1/rewards", json={"items": ITEMS})).json()
    assert got["model"] == want["model"] and got["config_hash"] == want["config_hash"]
    assert [r["id"] for r in got["results"]] == [it["id"] for it in ITEMS]
    bad = [(g, w) for g, w in zip(got["results"], want["results"], strict=True) if not _same(g, w)]
    assert not bad, f"{len(bad)} differ, first: {bad[0]}"
    assert sum(r["certainty"]["source"] == "model" and r["components"]["self_certainty"]
               is not None for r in got["results"]) > 150

    order = list(range(len(ITEMS)))
    random.Random(5).shuffle(order)
    singles = await post_each(model_app.url, ITEMS, AUTH, order)
    bad = [i for i, r in enumerate(singles) if not _same(_as_item_of(r, i), want["results"][i])]
    assert not bad, (
        f"{len(bad)} single-item answers differ, first: {singles[bad[0]]} "
        f"!= {want['results'][bad[0]]}"
    )


def _replica_deltas(before: list[dict], after: list[dict]) -> dict[str, dict]:
    old = {s["replica"]: s for s in before}
    out = {}
    for s in after:
        prior = old.get(s["replica"], {"keys": {}, "prompt_encodings": 0, "tokens": 0})
        keys = {k: n - prior["keys"].get(k, 0) for k, n in s["keys"].items()
                if n != prior["keys"].get(k, 0)}
        out[s["replica"]] = {
            "keys": keys,
            "prompt_encodings": s["prompt_encodings"] - prior["prompt_encodings"],
            "tokens": s["tokens"] - prior["tokens"],
        }
    return out


def test_group_members_meet_on_one_replica_and_share_one_encoding(model_app: ModelApp) -> None:
    """8 prompts x 8 completions, each completion its own request, all at once in random
    order: every member of a group is scored on one replica, and the prompt of each
    group is encoded exactly once."""
    groups = grpo_groups(8, 8, seed=12)
    items = [item for group in groups for item in group]
    order = list(range(len(items)))
    random.Random(6).shuffle(order)
    before = stats_of(APP, "CertaintyModel", with_keys=True)
    results = asyncio.run(post_each(model_app.url, items, AUTH, order))
    deltas = _replica_deltas(before, stats_of(APP, "CertaintyModel", with_keys=True))
    # A completion that fails the format never reaches the model.
    scored = [sum(r["format_ok"] for r in results[g * 8 : g * 8 + 8]) for g in range(8)]
    placements: dict[str, list[tuple[str, int]]] = {}
    for replica, delta in deltas.items():
        for key, count in delta["keys"].items():
            placements.setdefault(key, []).append((replica, count))
    assert len(placements) == sum(1 for n in scored if n), placements
    assert all(len(where) == 1 for where in placements.values()), placements
    assert sorted(where[0][1] for where in placements.values()) == sorted(n for n in scored if n)
    encodings = sum(d["prompt_encodings"] for d in deltas.values())
    assert encodings == len(placements), deltas


def _states() -> list[Any]:
    from ray import serve

    handle = serve.get_deployment_handle("CertaintyModel", APP)
    return handle.broadcast("state").results(timeout_s=60)


async def test_reload_reaches_every_model_replica(model_app: ModelApp) -> None:
    """/v1/reload loads the new weights on both replicas; answers then equal the single
    process on those weights; a directory outside the root is refused (422) on all."""
    async with httpx.AsyncClient(base_url=model_app.url, headers=AUTH, timeout=240) as client:
        refused = await client.post("/v1/reload", json={"model_dir": "/etc"})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "model_dir"
        assert {s.generation for s in await asyncio.to_thread(_states)} == {0}
        tiny2 = str(model_app.models / "tiny-2")
        reloaded = await client.post("/v1/reload", json={"model_dir": tiny2})
        assert reloaded.status_code == 200, reloaded.text
        states = await asyncio.to_thread(_states)
        assert len(states) == 2 and {s.model_dir for s in states} == {tiny2}
        assert len({s.generation for s in states}) == 1 and states[0].generation > 0
        got = (await client.post("/v1/rewards", json={"items": ITEMS[:64]})).json()
    async with single_process(_server(model_app.models / "tiny-2", model_app.models)) as ref:
        want = (await ref.post("/v1/rewards", json={"items": ITEMS[:64]}, headers=AUTH)).json()
    assert all(_same(g, w) for g, w in zip(got["results"], want["results"], strict=True))


def _kill_a_busy_model_replica() -> Any:
    """Kill a model replica as soon as one holds scoring calls; its state then."""
    import ray

    deadline = time.monotonic() + 60
    while True:
        busy = [s for s in _states() if s.in_flight > 0]
        if busy:
            break
        assert time.monotonic() < deadline, "no model replica ever held a call"
        time.sleep(0.1)
    name = f"SERVE_REPLICA::{APP}#CertaintyModel#{busy[0].replica}"
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return busy[0]


def test_killed_model_replica_loses_and_repeats_nothing(model_app: ModelApp) -> None:
    """Per-sample load through the project's client while a model replica is killed:
    every item comes back once, in order, equal to its answer before the kill; Serve
    replaces the replica and the new one serves the same (reloaded) weights."""
    from client import AsyncRewardClient, RetryPolicy

    items = [dict(it, id=f"{it['id']}-{n}") for n in range(2) for it in ITEMS[:96]]

    async def score_all() -> list[Any]:
        retry = RetryPolicy(max_attempts=8, base_backoff=0.5, max_backoff=4.0)
        async with AsyncRewardClient(model_app.url, api_key=API_KEY, chunk_size=1,
                                     max_concurrency=24, retry=retry, timeout=240) as client:
            batch = await client.score(items)
        return batch.results

    baseline = asyncio.run(score_all())

    async def score_while_killing() -> tuple[Any, list[Any]]:
        task = asyncio.ensure_future(score_all())
        victim = await asyncio.to_thread(_kill_a_busy_model_replica)
        return victim, await task

    victim, results = asyncio.run(score_while_killing())
    assert victim.in_flight > 0  # the calls it held were answered by the others
    assert [r.id for r in results] == [it["id"] for it in items]
    for before, after in zip(baseline, results, strict=True):
        assert after.components == before.components or math.isclose(
            after.components.self_certainty, before.components.self_certainty, rel_tol=1e-6
        ), (before, after)
        assert after.format_ok == before.format_ok and after.action == before.action
    wait_until(lambda: len([s for s in _states() if s.replica != victim.replica]) == 2, 180,
               "replaced")
    assert len({(s.generation, s.model_dir) for s in _states()}) == 1, _states()


def test_replicas_restarted_together_get_the_reloaded_weights_again(model_app: ModelApp) -> None:
    """Both model replicas killed at once: no peer remembers the reload, the ingress
    does, and sends it to the new replicas; answers are then as before the kill."""
    import ray

    before = {(s.generation, s.model_dir) for s in _states()}
    assert len(before) == 1 and next(iter(before))[0] > 0, "needs the reload test first"
    old = {s.replica for s in _states()}
    for replica in old:
        name = f"SERVE_REPLICA::{APP}#CertaintyModel#{replica}"
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    def converged() -> bool:
        try:
            states = _states()
        except Exception:  # no replica running yet: the broadcast has nowhere to go
            return False
        return (len(states) == 2 and not old & {s.replica for s in states}
                and {(s.generation, s.model_dir) for s in states} == before)

    wait_until(converged, 180, "back on the reloaded weights")


def test_sigterm_drains_in_flight_requests(model_app: ModelApp) -> None:
    """SIGTERM to ``shop-r1-reward ray-serve`` while requests are in flight: they are
    answered (200, every item), then the application is gone and the command exits 0."""
    from ray import serve

    async def in_flight() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=model_app.url, headers=AUTH, timeout=240) as c:
            # Each keyed call is held GROUP_WINDOW_MS on its replica: in flight for seconds.
            calls = [asyncio.ensure_future(c.post("/v1/rewards", json={"items": group}))
                     for group in GROUPS[:6]]
            await asyncio.sleep(1.0)
            model_app.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls)

    answers = asyncio.run(in_flight())
    for group, answer in zip(GROUPS[:6], answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert [r["id"] for r in answer.json()["results"]] == [it["id"] for it in group]
    assert model_app.process.wait(120) == 0, model_app.output()
    assert "draining" in model_app.output()
    assert APP not in serve.status().applications
