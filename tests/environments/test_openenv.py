"""OpenEnv 0.3.0's own code (``.venv-openenv``): the Shop-R1 server started by this
project's command (``shop-r1-openenv``, OpenEnv's app factory inside), played with
OpenEnv's own client over whole recorded episodes (more than 200 steps), and checked by
OpenEnv's own runtime validator; and TRL's GRPOTrainer training a step on it through its
``rollout_func``. Every step's reward equals ``shop-r1-reward score`` on the same answer;
malformed answers are format failures and the episode goes on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.environments.conftest import (
    STEPS,
    answer,
    assert_same_as_cli,
    cli_items,
    run_driver,
    venv_bin,
)
from tests.trainers.conftest import cli_scores

pytestmark = pytest.mark.slow


@contextmanager
def openenv_server(log_dir: Path, *args: str) -> Iterator[str]:
    """``shop-r1-openenv`` on a free loopback port until /health answers; its URL. A port
    taken by another process between its choice and the bind is chosen again."""
    program = venv_bin("openenv", "shop-r1-openenv")
    for _ in range(3):
        port = free_port()
        log = log_dir / f"openenv-{port}.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [str(program), "--port", str(port), *args], stdout=sink, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        if wait_healthy(process, url, log):
            break
        assert "address already in use" in log.read_text(errors="replace"), log.read_text()
    else:
        raise AssertionError("no free port for the OpenEnv server in 3 tries")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(30)


def wait_healthy(process: subprocess.Popen, url: str, log: Path) -> bool:
    """True once /health answers; False if the server exited first."""
    deadline = time.monotonic() + 120
    while process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"not healthy in 120 s:\n{log.read_text(errors='replace')}")
        time.sleep(0.3)
    return False


@pytest.fixture(scope="module")
def env_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server with the default options (rules core in-process), for the tests that
    pick their episodes by id."""
    with openenv_server(tmp_path_factory.mktemp("openenv")) as url:
        yield url


def episodes_covering(task, steps: int) -> list[list]:
    """The first train episodes, in the task's order, until they hold ``steps`` steps."""
    chosen, total = [], 0
    for episode in task.episodes("train"):
        if total >= steps:
            break
        chosen.append(episode)
        total += len(episode)
    return chosen


def test_whole_episodes_with_openenv_client(task, env_server, tmp_path):
    episodes = episodes_covering(task, STEPS)
    rows = [row for episode in episodes for row in episode]
    answers = {row.id: answer(row, k) for k, row in enumerate(rows)}
    # Every third step carries the trainer's own self-certainty (in-process: provided).
    certainties = {row.id: 1.25 + k / 100 for k, row in enumerate(rows) if k % 3 == 0}
    out = run_driver("openenv", "openenv_play.py", {
        "base_url": env_server, "episodes": [e[0].episode_id for e in episodes],
        "answers": answers, "self_certainty": certainties,
    }, tmp_path)

    assert out["validation"]["passed"], out["validation"]
    played = []
    for episode, record in zip(episodes, out["episodes"], strict=True):
        first = record["reset"]
        assert first["reward"] is None and not first["done"]
        assert (first["step_id"], first["steps_left"]) == (episode[0].id, len(episode))
        assert first["prompt"] == episode[0].messages
        assert len(record["steps"]) == len(episode)
        for index, (row, step) in enumerate(zip(episode, record["steps"], strict=True)):
            # Scored against this real step, then moved to the next real step.
            assert step["scored_step_id"] == row.id
            assert step["expected_action"] == row.ground_truth
            last = index == len(episode) - 1
            assert step["done"] is last
            assert step["step_id"] == (None if last else episode[index + 1].id)
            assert step["prompt"] == ([] if last else episode[index + 1].messages)
            assert step["steps_left"] == len(episode) - index - 1
            played.append({"id": row.id, **step})
        state = record["state"]
        assert state["episode_id"] == episode[0].episode_id
        assert state["step_count"] == len(episode)
        assert state["total_reward"] == sum(step["reward"] for step in record["steps"])

    assert len(played) >= STEPS
    expected = cli_scores(
        cli_items(rows, [answers[r.id] for r in rows], [certainties.get(r.id) for r in rows]),
        tmp_path,
    )
    assert_same_as_cli(played, expected)
    assert any(not r["format_ok"] for r in expected) and any(
        r["components"]["self_certainty"] is not None for r in expected
    )


def test_scoring_through_the_service(task, rules_server, tmp_path):
    (episode,) = episodes_covering(task, 1)
    answers = {row.id: answer(row, k) for k, row in enumerate(episode)}
    certainties = {row.id: 2.0 + k for k, row in enumerate(episode)}
    with openenv_server(tmp_path, "--reward-url", rules_server.url,
                        "--self-certainty-source", "provided") as url:
        out = run_driver("openenv", "openenv_play.py", {
            "base_url": url, "episodes": [episode[0].episode_id], "answers": answers,
            "self_certainty": certainties,
        }, tmp_path)
    steps = [{"id": row.id, **step} for row, step in zip(episode, out["episodes"][0]["steps"],
                                                       strict=True)]
    expected = cli_scores(
        cli_items(episode, [answers[r.id] for r in episode], [certainties[r.id] for r in episode]),
        tmp_path,
    )
    assert_same_as_cli(steps, expected)


def test_unreachable_service_is_an_error_naming_it(task, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    answers = {row.id: answer(row, 0) for row in task.train}
    with openenv_server(tmp_path, "--reward-url", closed, "--reward-max-attempts", "1",
                        "--reward-timeout", "5") as url:
        out = run_driver("openenv", "openenv_play.py", {
            "base_url": url, "answers": answers, "retry_after_error": True,
        }, tmp_path)
    assert len(out["errors"]) == 2 and all(closed in error for error in out["errors"]), out
    assert out["state"]["step_count"] == 0 and out["state"]["total_reward"] == 0.0


def test_trl_grpo_step_through_the_environment(task, env_server, tokenizer_dir, tmp_path):
    """TRL 1.16's OpenEnv path: GRPOTrainer's ``rollout_func`` plays the environment with
    OpenEnv's client and the trainer's own model (a tiny random-weight Llama with
    SmolLM2's tokenizer), one training step; the rewards TRL trains on are the
    environment's, and each equals the CLI's on the generated answer."""
    episode = task.episodes("train")[0]
    generations = 4
    out = run_driver("openenv", "trl_openenv_grpo.py", {
        "base_url": env_server, "tokenizer_dir": str(tokenizer_dir),
        "episodes": [episode[0].episode_id], "num_generations": generations,
        "max_new_tokens": 12, "output_dir": str(tmp_path / "grpo"),
    }, tmp_path, timeout=600)
    assert out["global_step"] == 1
    played = out["played"]
    assert len(played) == generations
    assert {p["step_id"] for p in played} == {episode[0].id}  # each generation: the real step
    expected = cli_scores(
        [{"id": episode[0].id, "completion": p["completion"],
          "ground_truth": episode[0].ground_truth} for p in played], tmp_path,
    )
    assert_same_as_cli([{"id": p["step_id"], **p} for p in played], expected)
    (logged, *_) = out["log"]
    mean = sum(p["reward"] for p in played) / generations
    assert logged["rewards/env_reward/mean"] == pytest.approx(mean)
