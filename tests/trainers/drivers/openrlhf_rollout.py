"""OpenRLHF 0.11's own rollout-side reward path, run in the trainers' environment.

For each prompt row, ``RolloutRayActor.generate_responses`` (the actor class itself, not
its Ray handle) runs ``SingleTurnAgentExecutor.execute`` once per sample: tokenize,
cut an over-long prompt from the left, generate (the scripted engine of
:mod:`gpu_stubs`), decode prompt + response into the query and fetch the reward: one
HTTP POST per sample in URL mode, or ``reward_func`` in a worker thread in ``.py`` mode.
Every row runs at once, so every sample's request is in flight together. Then
``SamplesGenerator._process_response_into_experience`` turns each response into an
``Experience``, ``RemoteExperienceMaker.split_rollout_samples`` concatenates them into
micro-batches, and ``split_experience_batch`` / ``make_experience_batch`` split and
rebuild them: the steps that fail when responses carry different ``extra_logs`` keys.

    python openrlhf_rollout.py SPEC.json OUT.json

SPEC: ``tokenizer_dir``, ``remote_url`` (list: URLs, or one ``.py`` path), ``rows``
(``prompt`` templated text, ``label``, ``answers``: one completion text per sample),
``max_len``, ``max_new_tokens``, ``micro_batch_size``; optional ``service`` (base URL):
wait until it is alive (``/healthz``), note whether it is ready (``/readyz``), then start.
OUT: per sample what the trainer holds after each step, and the batched logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import gpu_stubs


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as source:
        spec = json.load(source)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer_dir"])
    rows = spec["rows"]
    # The scripted policy: each row's answers in order, found by the prompt's last tokens
    # (which a left cut keeps); each ends with the end-of-turn token, as a chat model's does.
    tail = 24
    queues = {}
    for row in rows:
        ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        queues[tuple(ids[-tail:])] = [
            tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for answer in row["answers"]
        ]

    def answer(prompt_ids: list[int]) -> list[int]:
        return queues[tuple(prompt_ids[-tail:])].pop(0)

    engine = gpu_stubs.ScriptedEngine(answer, lambda ids: tokenizer.decode(ids))
    gpu_stubs.install(engine)
    os.environ.setdefault("RAY_ADDRESS", "local")  # read by the actor's set-up, never used

    from openrlhf.trainer.ppo_utils.experience import (
        make_experience_batch,
        split_experience_batch,
    )
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.trainer.ray.vllm_engine import RolloutRayActor
    from vllm import SamplingParams

    actor_class = RolloutRayActor.__ray_actor_class__  # the class behind the Ray handle
    max_new_tokens = spec["max_new_tokens"]

    async def rollout() -> list[dict]:
        actor = actor_class.__new__(actor_class)
        await actor.__init__(remote_rm_url=spec["remote_url"], num_gpus=0)
        # What SamplesGenerator._dispatch_prompts_to_vllm sends each prompt's engine.
        params = SamplingParams(
            temperature=0.6, top_p=1.0, top_k=-1, max_tokens=max_new_tokens, min_tokens=1,
            skip_special_tokens=False, logprobs=None,
        )
        groups = await asyncio.gather(*(
            actor.generate_responses(
                prompt=row["prompt"], label=row["label"], sampling_params=params,
                max_length=spec["max_len"], hf_tokenizer=tokenizer,
                num_samples=len(row["answers"]),
            )
            for row in rows
        ))
        return [response for group in groups for response in group]

    readyz_before = _wait_alive(spec["service"]) if spec.get("service") else None
    responses = asyncio.run(rollout())
    args = SimpleNamespace(
        rollout=SimpleNamespace(n_samples_per_prompt=len(rows[0]["answers"]),
                                micro_batch_size=spec["micro_batch_size"], batch_size=len(rows)),
        train=SimpleNamespace(dynamic_batch_enable=False),
        algo=SimpleNamespace(dynamic_filtering_enable=False),
        vllm=SimpleNamespace(enable_sleep=False),
    )
    generator = SamplesGenerator(
        strategy=SimpleNamespace(args=args), prompts_dataloader=None, eval_dataloader=None,
        tokenizer=tokenizer, vllm_engines=[],
    )
    experiences = [
        generator._process_response_into_experience(response, max_len=spec["max_len"])
        for response in responses
    ]
    maker = RemoteExperienceMaker.__new__(RemoteExperienceMaker)
    maker.args, maker.tokenizer = args, tokenizer
    micro_batches = maker.split_rollout_samples(experiences)
    singles = [item for batch in micro_batches for item in split_experience_batch(batch)]
    rebuilt = make_experience_batch(singles)

    samples = []
    for response, experience in zip(responses, experiences, strict=True):
        start, end = response["action_ranges"][0]
        action_ids = response["observation_tokens"][start:end]
        samples.append({
            "prompt": response["prompt"],
            "label": response["label"],
            "prompt_tokens_kept": start,
            "response_text": tokenizer.decode(action_ids, skip_special_tokens=True),
            "reward": _plain(response["reward"]),
            "scores": _plain(response["scores"]),
            "extra_logs": {k: _plain(v) for k, v in response["extra_logs"].items()},
            "info_keys": sorted(experience.info),
            "experience_reward": None if experience.rewards is None
            else experience.rewards.flatten().tolist(),
        })
    out = {
        "samples": samples,
        "requests_to_engine": engine.requests,
        "micro_batches": len(micro_batches),
        "batched_info": {k: _flat(v) for k, v in rebuilt.info.items()},
        "batch_size": len(rebuilt.sequences),
        "readyz_before": readyz_before,
    }
    with open(out_path, "w", encoding="utf-8") as sink:
        json.dump(out, sink)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _wait_alive(service: str, limit: float = 180) -> int | None:
    """Wait until the service process answers (its port is open), then ``/readyz``'s status."""
    deadline = time.monotonic() + limit
    while _status(service + "/healthz") != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} never came up")
        time.sleep(0.05)
    return _status(service + "/readyz")


def _flat(value) -> list:
    """A batched info entry: one tensor, or (values of mixed shapes) a list of tensors."""
    if isinstance(value, list):
        return [x for item in value for x in _flat(item)]
    return value.flatten().tolist() if hasattr(value, "flatten") else [value]


def _plain(value):
    """A reply value as JSON: OpenRLHF keeps lists (URL mode) or tensors (``.py`` mode)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
