"""verl's own config composition and reward loop load our function from the documented
keys and score 200 samples with it, each reward equal to the CLI's; the keys the older
documentation used are shown to be ignored by verl 0.9.

verl 0.9.1 and 0.7.0 run in the trainers' environment (``scripts/install-trainers``).
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.trainers import documented, shopping
from tests.trainers.conftest import cli_scores, run_json_driver

pytestmark = pytest.mark.slow

KEYS = {
    "score", "score_normalized", "format", "type", "attribute", "value", "format_ok",
    "self_certainty", "self_certainty_missing", "self_certainty_approximate",
}


def verl_samples(rows: int, per_row: int, with_prompt: bool = True) -> list[dict]:
    """Rows as ``examples/verl/prepare_data.py`` writes them, each with ``per_row`` answers."""
    spec = importlib.util.spec_from_file_location(
        "prepare_data", REPO / "examples" / "verl" / "prepare_data.py"
    )
    prepare = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(prepare)  # type: ignore[union-attr]
    samples = []
    for index, row in enumerate(shopping.rows(rows)):
        verl_row = prepare.verl_row(row, index, "train")
        if not with_prompt:
            verl_row["extra_info"].pop("prompt")
        for answer in shopping.answers(row["ground_truth"], per_row):
            samples.append({**verl_row, "response": answer})
    return samples


def overrides(label: str, tokenizer_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    words = documented.command("verl/README.md", label)
    args = documented.after_program(words, "verl.trainer.main_ppo")
    replace = {
        **documented.placeholders(tmp_path),
        "actor_rollout_ref.model.path=": str(tokenizer_dir),
    }
    return [*documented.localised(args, replace), *extra]


def float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def check_against_cli(out: dict, samples: list[dict], tmp_path: Path) -> None:
    assert "error" not in out, out.get("error")
    extra = out["extra"]
    assert set(extra) >= KEYS  # one key set for every sample, or verl could not stack it
    assert all(len(values) == len(samples) for values in extra.values())
    items = []
    for index, sample in enumerate(samples):
        truth = sample["reward_model"]["ground_truth"]
        item = {"completion": sample["response"], "ground_truth": truth}
        if extra["self_certainty_missing"][index] == 0:
            item["self_certainty"] = extra["self_certainty"][index]
        items.append(item)
    for index, cli in enumerate(cli_scores(items, tmp_path)):
        assert extra["score"][index] == cli["reward"]
        assert out["scores"][index] == float32(cli["reward"])  # verl's rm_scores: float32
        assert extra["format_ok"][index] == float(cli["format_ok"])


def test_verl_091_reward_loop_200_samples(rules_server, tokenizer_dir, tmp_path):
    samples = verl_samples(25, 8)
    spec = {
        "overrides": overrides("verl 0.9.1: reward loop", tokenizer_dir, tmp_path,
                               "reward.num_workers=2"),
        "tokenizer_dir": str(tokenizer_dir),
        "samples": samples,
        "mode": "loop",
        "validate": True,
    }
    out = run_json_driver("verl-0.9.1", "verl_reward.py", spec, tmp_path,
                          env={"SHOP_R1_REWARD_URL": rules_server.url})
    assert out["validated"] and out["custom_path"].endswith("trainer_adapter/verl.py")
    check_against_cli(out, samples, tmp_path)


def test_verl_091_ignores_the_old_keys(tokenizer_dir, tmp_path):
    """``custom_reward_function.*`` composes, but the reward loop never sees it."""
    old = [
        "reward_model.reward_manager=naive",
        f"custom_reward_function.path={REPO / 'trainer_adapter' / 'verl.py'}",
        "custom_reward_function.name=compute_score",
        f"actor_rollout_ref.model.path={tokenizer_dir}",
    ]
    samples = verl_samples(1, 2)
    spec = {"overrides": old, "tokenizer_dir": str(tokenizer_dir), "samples": samples,
            "mode": "worker"}
    out = run_json_driver("verl-0.9.1", "verl_reward.py", spec, tmp_path)
    assert out["custom_path"] is None
    assert out["error"]["type"] == "NotImplementedError"  # verl's default scorer
    batch = {**spec, "overrides": [*overrides("verl 0.9.1: reward loop", tokenizer_dir, tmp_path),
                                   "reward.reward_manager.name=batch"]}
    batch["overrides"].remove("reward.reward_manager.name=naive")
    out = run_json_driver("verl-0.9.1", "verl_reward.py", batch, tmp_path)
    assert "Unknown reward manager: batch" in out["error"]["message"]


def test_verl_070_reward_loop_and_legacy_batch(rules_server, tokenizer_dir, tmp_path):
    samples = verl_samples(5, 8)
    env = {"SHOP_R1_REWARD_URL": rules_server.url}
    loop = {
        "overrides": overrides("verl 0.7.0: reward loop", tokenizer_dir, tmp_path,
                               "reward_model.num_workers=2"),
        "tokenizer_dir": str(tokenizer_dir), "samples": samples, "mode": "loop",
    }
    out = run_json_driver("verl-0.7.0", "verl_reward.py", loop, tmp_path, env=env)
    check_against_cli(out, samples, tmp_path)
    legacy = {**loop, "mode": "legacy_batch",
              "overrides": overrides("verl 0.7.0: legacy batch manager", tokenizer_dir, tmp_path)}
    out = run_json_driver("verl-0.7.0", "verl_reward.py", legacy, tmp_path, env=env)
    check_against_cli(out, samples, tmp_path)


def test_self_certainty_without_the_prompt_is_flagged(model_server, tokenizer_dir, tmp_path):
    """With the prompt in ``extra_info`` the value is exact; without it, flagged."""
    samples = verl_samples(1, 1) + verl_samples(1, 1, with_prompt=False)
    spec = {
        "overrides": overrides("verl 0.9.1: reward loop", tokenizer_dir, tmp_path),
        "tokenizer_dir": str(tokenizer_dir), "samples": samples, "mode": "worker",
    }
    out = run_json_driver("verl-0.9.1", "verl_reward.py", spec, tmp_path,
                          env={"SHOP_R1_REWARD_URL": model_server.url})
    assert "error" not in out, out
    assert out["extra"]["self_certainty_missing"] == [0.0, 0.0]
    assert out["extra"]["self_certainty_approximate"] == [0.0, 1.0]
    assert out["extra"]["self_certainty"][0] != out["extra"]["self_certainty"][1]
