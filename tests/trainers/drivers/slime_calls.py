"""slime's two ways of calling a reward service, run in the trainers' environment.

slime is not on PyPI, so this is not its code: ``remote_rm`` below sends exactly the
request slime's ``rm_hub.remote_rm`` sends (one POST per sample, JSON
``{"prompt", "response", "label"}``, one shared aiohttp session with at most 64
connections and a 120 s total timeout, 10 attempts with capped exponential backoff) and
handles the reply the way slime does (the whole JSON body becomes ``sample.reward``;
the trained value is ``reward[args.reward_key]``). ``group_rm`` / ``rm`` are this
project's adapter functions, called the way slime's ``batched_async_rm`` /
``async_rm`` call a ``--custom-rm-path`` function: ``await fn(args, samples)`` once per
prompt group, or ``await fn(args, sample)``.

    python slime_calls.py SPEC.json OUT.json

SPEC: ``mode`` (``remote_rm``, ``group_rm``, ``rm``), ``url`` (remote_rm), ``reward_key``,
``group_size``, ``samples`` (``prompt``, ``response``, ``label``). OUT: ``rewards`` (what
slime stores per sample) and ``values`` (what it trains on).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from types import SimpleNamespace

import aiohttp


async def remote_rm(url: str, samples: list[SimpleNamespace]) -> list:
    connector = aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def one(sample: SimpleNamespace):
            body = {"prompt": sample.prompt, "response": sample.response, "label": sample.label}
            for attempt in range(10):
                try:
                    async with session.post(url, json=body) as reply:
                        reply.raise_for_status()
                        return await reply.json()
                except Exception:
                    if attempt == 9:
                        raise
                    await asyncio.sleep(min(2**attempt, 30) + random.random())
            raise AssertionError("unreachable")

        return await asyncio.gather(*(one(sample) for sample in samples))


async def custom(mode: str, args: SimpleNamespace, samples: list[SimpleNamespace], size: int):
    from trainer_adapter import slime

    if mode == "rm":
        return await asyncio.gather(*(slime.rm(args, sample) for sample in samples))
    groups = [samples[i : i + size] for i in range(0, len(samples), size)]
    rewards = await asyncio.gather(*(slime.group_rm(args, group) for group in groups))
    return [reward for group in rewards for reward in group]


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as source:
        spec = json.load(source)
    samples = [SimpleNamespace(metadata={}, **sample) for sample in spec["samples"]]
    args = SimpleNamespace(reward_key=spec.get("reward_key"))
    if spec["mode"] == "remote_rm":
        rewards = asyncio.run(remote_rm(spec["url"], samples))
    else:
        rewards = asyncio.run(custom(spec["mode"], args, samples, spec.get("group_size", 8)))
    key = args.reward_key
    values = [reward if not key else reward[key] for reward in rewards]
    with open(out_path, "w", encoding="utf-8") as sink:
        json.dump({"rewards": rewards, "values": values}, sink)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
