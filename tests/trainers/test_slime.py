"""slime's reward calls against the real service: 200 samples at once through
``--rm-type remote_rm`` (the request shape and reply handling slime's code uses; slime
itself is not on PyPI) and through ``--custom-rm-path trainer_adapter.slime.group_rm
--group-rm`` / ``trainer_adapter.slime.rm``; every trained value equals the CLI's reward.
"""

from __future__ import annotations

import json

import pytest

from tests.trainers import shopping
from tests.trainers.conftest import cli_scores, run_json_driver

pytestmark = pytest.mark.slow


def slime_samples(rows: int, per_row: int) -> list[dict]:
    samples = []
    for row in shopping.rows(rows, long_every=0):
        for answer in shopping.answers(row["ground_truth"], per_row):
            # slime's Sample: prompt (messages with --apply-chat-template off), the
            # decoded response, the --label-key column.
            samples.append({"prompt": row["prompt"], "response": answer + "<|im_end|>",
                            "label": row["ground_truth"]})
    return samples


def expected(samples: list[dict], tmp_path) -> list[float]:
    items = [{"completion": s["response"].removesuffix("<|im_end|>"), "ground_truth": s["label"]}
             for s in samples]
    return [line["reward"] for line in cli_scores(items, tmp_path)]


@pytest.mark.parametrize("mode", ["remote_rm", "group_rm", "rm"])
def test_200_samples_each_reward_equals_the_cli(rules_server, tmp_path, mode):
    samples = slime_samples(25, 8)
    spec = {"mode": mode, "url": rules_server.url + "/slime/reward", "reward_key": "reward",
            "group_size": 8, "samples": samples}
    out = run_json_driver(None, "slime_calls.py", spec, tmp_path,
                          env={"SHOP_R1_REWARD_URL": rules_server.url})
    assert out["values"] == expected(samples, tmp_path)
    keys = {frozenset(reward) for reward in out["rewards"]}
    assert len(keys) == 1  # one shape for every sample
    assert {"reward", "score", "format_ok", "format_error", "self_certainty",
            "self_certainty_approximate", "self_certainty_reason"} <= set(next(iter(keys)))


def test_without_reward_key_group_rm_returns_floats(rules_server, tmp_path):
    samples = slime_samples(2, 8)
    spec = {"mode": "group_rm", "reward_key": None, "group_size": 8, "samples": samples}
    out = run_json_driver(None, "slime_calls.py", spec, tmp_path,
                          env={"SHOP_R1_REWARD_URL": rules_server.url})
    assert out["rewards"] == expected(samples, tmp_path)
    assert all(isinstance(value, float) for value in out["rewards"])


def test_unset_label_key_is_a_422_naming_the_flag(rules_server, tmp_path):
    import httpx

    reply = httpx.post(rules_server.url + "/slime/reward",
                       json={"prompt": "p", "response": json.dumps({}), "label": None})
    assert reply.status_code == 422
    assert "--label-key" in reply.json()["error"]["message"]
