"""NeMo Gym 0.4.0's own code (``.venv-nemo-gym``, Python 3.12): the Shop-R1 resources
server built on ``SimpleResourcesServer``, its own web app served by uvicorn, real
``POST /verify`` requests in NeMo Gym's request shape on 200 dataset rows written from the
task, and ``/aggregate_metrics`` over the answers. Every reward equals
``shop-r1-reward score`` on the same item; a malformed answer is a format failure; a bad
ground truth is a 422 naming the field; an unreachable service is a 502 naming its URL.

Not run here: ``ng_run`` (it starts a Ray cluster and a head server to launch servers
from YAML configs); the driver assembles the same app that ``run_webserver`` serves.
"""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.environments.conftest import (
    STEPS,
    answer,
    assert_same_as_cli,
    cli_items,
    run_driver,
)
from tests.trainers.conftest import cli_scores

pytestmark = pytest.mark.slow


def as_result(response: dict) -> dict:
    return {
        "id": response["id"], "reward": response["reward"], "score": response["score"],
        "components": {name: response[name]
                       for name in ("format", "type", "attribute", "value", "self_certainty")},
        "format_error_reason": response["format_error_reason"],
    }


def test_verify_scores_like_the_cli(task, tmp_path):
    rows = task.train[:STEPS]
    certainties = [0.5 + k / 10 if k % 4 == 0 else None for k in range(len(rows))]
    items = [{"id": r.id, "completion": answer(r, k)} for k, r in enumerate(rows)]
    for item, value in zip(items, certainties, strict=True):
        if value is not None:
            item["self_certainty"] = value
    bad = {"id": rows[0].id, "completion": answer(rows[0], 0),
           "ground_truth": {"type": "click", "name": ""}}
    out = run_driver("nemo_gym", "nemo_gym_verify.py",
                     {"config": {}, "split": "train", "items": [*items, bad]}, tmp_path)
    *responses, refused = out["responses"]

    expected = cli_scores(cli_items(rows, [i["completion"] for i in items], certainties), tmp_path)
    assert_same_as_cli([as_result(r) for r in responses], expected)
    for response, want in zip(responses, expected, strict=True):
        assert response["format_ok"] is want["format_ok"]
        # The request comes back with the verdict, as NeMo Gym's verify responses do.
        assert response["response"]["output"][0]["content"][0]["text"] is not None
        assert response["ground_truth"] == next(r.ground_truth for r in rows
                                                if r.id == response["id"])
    assert any(not r["format_ok"] for r in responses)

    assert refused["status"] == 422 and "ground_truth" in refused["body"], refused
    # NeMo Gym's aggregate metrics profile every component beside the reward.
    agent = out["aggregate"]["agent_metrics"]
    assert {"mean/reward", "mean/format", "mean/type", "mean/attribute", "mean/value",
            "mean/score"} <= set(agent)


def test_verify_through_the_service_and_unreachable(task, rules_server, tmp_path):
    rows = task.test[:20]
    items = [{"id": r.id, "completion": answer(r, k), "self_certainty": 1.0 + k}
             for k, r in enumerate(rows)]
    out = run_driver("nemo_gym", "nemo_gym_verify.py", {
        "config": {"reward_url": rules_server.url, "self_certainty_source": "provided"},
        "split": "test", "items": items,
    }, tmp_path)
    expected = cli_scores(cli_items(rows, [i["completion"] for i in items],
                                    [i["self_certainty"] for i in items]), tmp_path)
    assert_same_as_cli([as_result(r) for r in out["responses"]], expected)

    closed = f"http://127.0.0.1:{free_port()}"
    out = run_driver("nemo_gym", "nemo_gym_verify.py", {
        "config": {"reward_url": closed, "reward_max_attempts": 1, "reward_timeout": 5},
        "split": "test", "items": items[:1],
    }, tmp_path)
    (failed,) = out["responses"]
    assert failed["status"] == 502 and closed in failed["body"], failed
