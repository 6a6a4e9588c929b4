"""verifiers 0.4.0's own code (``.venv-verifiers``): the shop_r1 environment loaded with
its loader (``resolve_env_config`` + ``load_environment``, as eval, serve and prime-rl do),
and fixed completions of real task steps scored through ``Task.score`` (the decorated
rewards, their weights, ``Trace.reward``). Every reward equals ``shop-r1-reward score``
on the same item, over 200 steps in-process and through the service. verifiers' own
``vf-validate`` runs the gold and no-op checks over the test split."""

from __future__ import annotations

import json
import subprocess

import pytest

from shop_task.rows import trl_row
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

PAPER_ALPHA = 0.005
COMPONENTS = ["format", "type", "attribute", "value", "self_certainty"]


def as_result(run_result: dict) -> dict:
    """A driver result in the shape ``assert_same_as_cli`` compares."""
    info = run_result["info"]
    error = info["format_error"]
    return {
        "id": run_result["id"], "reward": run_result["reward"], "score": info["score"],
        "components": info["components"], "format_error_reason": error and error["reason"],
    }


def test_verifiers_environment_scores_like_the_cli(task, rules_server, tmp_path):
    train = task.train[:STEPS]
    service_rows = task.test[:20]
    user_rows = task.test[20:25]
    user_file = tmp_path / "rows.jsonl"
    user_file.write_text("".join(json.dumps({**trl_row(r), "id": r.id}) + "\n" for r in user_rows))
    closed = f"http://127.0.0.1:{free_port()}"
    runs = [
        {"env": {"taskset": {"id": "shop_r1", "split": "train"}},
         "items": [{"id": r.id, "completion": answer(r, k)} for k, r in enumerate(train)]},
        {"env": {"taskset": {"id": "shop_r1", "split": "test",
                             "task": {"reward_url": rules_server.url}}},
         "items": [{"id": r.id, "completion": answer(r, k)} for k, r in enumerate(service_rows)]},
        {"env": {"taskset": {"id": "shop_r1", "rows_path": str(user_file)}}, "items": []},
        {"env": {"taskset": {"id": "shop_r1", "split": "test", "task": {
            "reward_url": closed, "reward_profile": "paper", "reward_max_attempts": 1,
            "reward_timeout": 5}}},
         "items": [{"id": service_rows[0].id, "completion": answer(service_rows[0], 0)}]},
    ]
    out = run_driver("verifiers", "verifiers_score.py", {"runs": runs}, tmp_path)["runs"]
    local, service, user, unreachable = out

    # The loader found the package's Taskset and paired it with verifiers' default env;
    # the default dataset is the task's split, in episode then step order.
    assert (local["env"], local["taskset"]) == ("SingleAgentEnv", "ShopR1Taskset")
    assert local["ids"] == [row.id for row in task.train]
    assert service["ids"] == [row.id for row in task.test]
    assert user["ids"] == [row.id for row in user_rows]

    expected = cli_scores(cli_items(train, [answer(r, k) for k, r in enumerate(train)]), tmp_path)
    assert_same_as_cli([as_result(r) for r in local["results"]], expected)
    reasons = {r["format_error"]["reason"] for r in expected if r["format_error"]}
    assert len(reasons) >= 2 and any(r["format_ok"] for r in expected)  # both kinds scored
    for result, want in zip(local["results"], expected, strict=True):
        # One verifiers reward per component, in the contract's order, weighted so that
        # they add up to the Shop-R1 reward exactly.
        assert list(result["rewards"]) == COMPONENTS
        weights = [weight for _, weight in result["rewards"].values()]
        assert weights == [1.0, 1.0, 1.0, 1.0, PAPER_ALPHA]
        scores = {name: score for name, (score, _) in result["rewards"].items()}
        assert scores == {**want["components"], "self_certainty": 0.0}
        assert result["metrics"] == {
            "shop_r1_score": want["score"], "format_ok": float(want["format_ok"]),
            "self_certainty_missing": 1.0,
        }

    service_expected = cli_scores(
        cli_items(service_rows, [answer(r, k) for k, r in enumerate(service_rows)]), tmp_path
    )
    assert_same_as_cli([as_result(r) for r in service["results"]], service_expected)

    # An unreachable service fails the scoring with an error naming its URL: no reward.
    (failed,) = unreachable["results"]
    assert "reward" not in failed and closed in failed["error"], failed


def test_vf_validate_gold_and_noop(task, tmp_path):
    """verifiers' own ``vf-validate`` on the test split: every task's gold answer (the
    shopper's own action) scores 1, and an untouched task (no answer) scores 0."""
    program = venv_bin("verifiers", "vf-validate")
    done = subprocess.run(
        [str(program), "shop_r1", "--rich", "False", "-o", str(tmp_path / "runs"),
         "--taskset.split", "test", "--runtime.type", "subprocess"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (summary_path,) = (tmp_path / "runs").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["total"] == len(task.test)
    for check in ("gold", "noop"):
        assert summary["checks"][check]["valid"] == len(task.test), summary
    results = [json.loads(line) for line in summary_path.with_name("results.jsonl").open()]
    assert {r["noop"]["reward"] for r in results} == {0.0}
