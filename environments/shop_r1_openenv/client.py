"""The Shop-R1 environment's client: OpenEnv's ``EnvClient`` over the server's WebSocket
session (one session, one replayed episode at a time)::

    from shop_r1_openenv import ShopR1Action, ShopR1Env

    with ShopR1Env(base_url="http://127.0.0.1:8001").sync() as env:
        result = env.reset()                       # or reset(episode_id=...) / reset(seed=3)
        while not result.done:
            answer = policy(result.observation.prompt)          # the JSON answer text
            result = env.step(ShopR1Action(completion=answer))
            print(result.reward, result.observation.components)
"""

from __future__ import annotations

from typing import Any

from openenv.core import EnvClient
from openenv.core.client_types import StepResult

from .models import ShopR1Action, ShopR1Observation, ShopR1State


class ShopR1Env(EnvClient[ShopR1Action, ShopR1Observation, ShopR1State]):
    def _step_payload(self, action: ShopR1Action) -> dict[str, Any]:
        return action.model_dump(exclude={"metadata"}, exclude_none=True)

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[ShopR1Observation]:
        observation = ShopR1Observation(
            **payload.get("observation", {}),
            done=payload.get("done", False),
            reward=payload.get("reward"),
        )
        return StepResult(
            observation=observation, reward=payload.get("reward"), done=observation.done
        )

    def _parse_state(self, payload: dict[str, Any]) -> ShopR1State:
        return ShopR1State(**payload)
