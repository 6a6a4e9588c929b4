"""verl's own config composition and reward computation, run in the trainers' environment.

    python verl_reward.py SPEC.json OUT.json

SPEC: ``overrides`` (the documented Hydra overrides, as ``verl.trainer.main_ppo`` gets
them on its command line), ``tokenizer_dir`` (the policy tokenizer), ``samples``
(``prompt`` chat messages, ``response`` text, ``data_source``, ``reward_model``,
``extra_info`` as verl's dataset row carries them), ``mode``:

* ``loop``: verl's reward loop as the trainer runs it: ``RewardLoopManager`` on a real
  local Ray cluster starts its ``RewardLoopWorker`` actors, each loads the custom reward
  function named by the composed config and scores its share of the batch
  (``compute_rm_score``), one asynchronous call per sample;
* ``legacy_batch``: verl 0.7.0 with ``reward_model.use_reward_loop=False``: the reward
  manager ``main_ppo`` builds (``load_reward_manager``) called on the batch;
* ``worker``: one ``RewardLoopWorker`` in this process (no Ray): what the composed config
  makes of the custom function (used to show what ignored keys lead to).

``validate``: run ``validate_config`` first, as verl 0.9's ``main_ppo.main`` does.
OUT: per-sample ``scores`` and ``extra`` (``reward_extra_info``), ``custom_path`` (what
the reward loop reads), or ``error`` (type and message) when scoring raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def compose_config(overrides: list[str]):
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def build_batch(samples: list[dict], tokenizer):
    """A rollout batch as verl's trainer hands it to the reward: left-padded prompts,
    right-padded responses ending with the end-of-turn token, the dataset's columns."""
    import torch
    from verl import DataProto

    prompts = [
        tokenizer.apply_chat_template(s["prompt"], tokenize=True, add_generation_prompt=True)
        for s in samples
    ]
    prompts = [list(p["input_ids"]) if isinstance(p, dict) or hasattr(p, "keys") else list(p)
               for p in prompts]
    responses = [
        tokenizer(s["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for s in samples
    ]
    width_p, width_r = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    prompt_mask = torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) for p in prompts])
    response_mask = torch.tensor([[1] * len(r) + [0] * (width_r - len(r)) for r in responses])
    tensors = {
        "prompts": prompt_ids,
        "responses": response_ids,
        "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        "attention_mask": torch.cat([prompt_mask, response_mask], dim=1),
    }
    non_tensors = {
        "data_source": np.array([s["data_source"] for s in samples], dtype=object),
        "reward_model": np.array([s["reward_model"] for s in samples], dtype=object),
        "extra_info": np.array([dict(s["extra_info"]) for s in samples], dtype=object),
        "raw_prompt": np.array([s["prompt"] for s in samples], dtype=object),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def _plain(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as source:
        spec = json.load(source)
    config = compose_config(spec["overrides"])
    out: dict = {"custom_path": _custom_path(config)}
    if spec.get("validate"):
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config

        validate_config(
            config=config,
            use_reference_policy=need_reference_policy(config),
            use_critic=need_critic(config),
        )
        out["validated"] = True
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    data = build_batch(spec["samples"], tokenizer)
    try:
        scores, extra = {
            "loop": run_loop, "legacy_batch": run_legacy_batch, "worker": run_worker,
        }[spec["mode"]](config, data, tokenizer)
    except Exception as exc:  # reported: the test asserts what verl raised
        out["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000]}
    else:
        out["scores"] = scores
        out["extra"] = {key: _plain(values) for key, values in extra.items()}
    with open(out_path, "w", encoding="utf-8") as sink:
        json.dump(out, sink)


def _custom_path(config) -> str | None:
    reward = config.get("reward")
    if reward is not None and "custom_reward_function" in reward:
        return reward.custom_reward_function.path  # verl 0.7.1+
    return config.custom_reward_function.path  # verl 0.7.0


def run_loop(config, data, tokenizer):
    import ray
    from verl.experimental.reward_loop import RewardLoopManager

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp,
             log_to_driver=False)
    try:
        manager = RewardLoopManager(config)
        result = manager.compute_rm_score(data)
    finally:
        ray.shutdown()
    scores = result.batch["rm_scores"].sum(dim=-1).tolist()
    keys = result.meta_info.get("reward_extra_keys", [])
    return scores, {key: result.non_tensor_batch[key] for key in keys}


def run_legacy_batch(config, data, tokenizer):
    from verl.trainer.ppo.reward import load_reward_manager

    reward_fn = load_reward_manager(
        config, tokenizer, num_examine=0, **config.reward_model.get("reward_kwargs", {})
    )
    result = reward_fn(data, return_dict=True)
    return result["reward_tensor"].sum(dim=-1).tolist(), dict(result["reward_extra_info"])


def run_worker(config, data, tokenizer):
    from verl.experimental.reward_loop import RewardLoopWorker

    worker_class = getattr(RewardLoopWorker, "__ray_actor_class__", RewardLoopWorker)

    async def score():
        worker = worker_class(config, None)  # built on the running loop, as in its actor
        return await worker.compute_score_batch(data)

    outputs = asyncio.run(score())
    keys = list(outputs[0].get("reward_extra_info", {}))
    extra = {key: [o["reward_extra_info"][key] for o in outputs] for key in keys}
    return [o["reward_score"] for o in outputs], extra


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main(sys.argv[1], sys.argv[2])
