"""Load the shop_r1 environment with verifiers' own loader and score fixed completions
through its Task.score (the decorated rewards, their weights, the trace's reward).

spec: {"runs": [{"env": <EnvConfig dict>, "items": [{"id", "completion"}]}, ...]}
out:  {"runs": [{"env", "taskset", "ids": [every task key, in order], "results": [{"id",
      "reward", "rewards": {name: [score, weight]}, "metrics", "info"} | {"id", "error"}]}]}
"""

from __future__ import annotations

import asyncio

import verifiers.v1 as vf
from driver_io import run
from verifiers.v1.graph import MessageNode
from verifiers.v1.types import AssistantMessage, UserMessage


def error_chain(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


async def score(task, completion: str) -> dict:
    trace = vf.Trace(
        agent=vf.AgentInfo(config=vf.AgentConfig()),
        task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key),
        nodes=[
            MessageNode(parent=None, message=UserMessage(content=task.data.prompt_text),
                        sampled=False),
            MessageNode(parent=0, message=AssistantMessage(content=completion), sampled=True),
        ],
    )
    assert await task.hooks("stop")[0](trace), "one answer ends the rollout"
    try:
        await task.score(trace)
    except Exception as exc:  # reported to the test, which asserts on it
        return {"id": task.data.id, "error": error_chain(exc)}
    return {
        "id": task.data.id,
        "reward": trace.reward,
        "rewards": {name: [r.score, r.weight] for name, r in trace.rewards.items()},
        "metrics": trace.metrics,
        "info": trace.info["shop_r1"],
    }


async def run_one(spec: dict) -> dict:
    config = vf.resolve_env_config(spec["env"])
    env = vf.load_environment(config)
    tasks = {task.key: task for task in env.taskset}
    results = [await score(tasks[item["id"]], item["completion"]) for item in spec["items"]]
    return {"env": type(env).__name__, "taskset": type(env.taskset).__name__,
            "ids": list(tasks), "results": results}


async def main(spec: dict) -> dict:
    return {"runs": [await run_one(one) for one in spec["runs"]]}


if __name__ == "__main__":
    run(lambda spec: asyncio.run(main(spec)))
