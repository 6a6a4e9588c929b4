"""Play whole episodes of the Shop-R1 OpenEnv server with OpenEnv's own client
(``EnvClient`` over the WebSocket session), and check the running server with OpenEnv's
own runtime validator.

spec: {"base_url", "episodes": [ids], "answers": {step_id: completion},
       "self_certainty": {step_id: value}?, "retry_after_error": bool?}
out:  {"validation": report, "episodes": [{"reset": obs, "steps": [step...], "state"}]}
      (with "retry_after_error": {"errors": [message, message], "state"} instead)
"""

from __future__ import annotations

from driver_io import run
from openenv.cli._validation import validate_running_environment
from shop_r1_openenv import ShopR1Action, ShopR1Env


def observed(result) -> dict:
    obs = result.observation
    return {
        "reward": result.reward, "done": result.done, "step_id": obs.step_id,
        "steps_left": obs.steps_left, "scored_step_id": obs.scored_step_id,
        "components": obs.components, "score": obs.score,
        "format_error_reason": obs.format_error and obs.format_error["reason"],
        "expected_action": obs.expected_action, "prompt": obs.prompt,
    }


def play(env, episode_id: str, answers: dict, certainties: dict) -> dict:
    result = env.reset(episode_id=episode_id)
    record = {"reset": observed(result), "steps": []}
    while not result.done:
        step_id = result.observation.step_id
        action = ShopR1Action(completion=answers[step_id],
                              self_certainty=certainties.get(step_id))
        result = env.step(action)
        record["steps"].append(observed(result))
    record["state"] = env.state().model_dump()
    return record


def main(spec: dict) -> dict:
    with ShopR1Env(base_url=spec["base_url"]).sync() as env:
        if spec.get("retry_after_error"):
            result = env.reset()
            errors = []
            for _ in range(2):  # the failed step is not taken: it can be sent again
                try:
                    env.step(ShopR1Action(completion=spec["answers"][result.observation.step_id]))
                except RuntimeError as exc:
                    errors.append(str(exc))
            return {"errors": errors, "state": env.state().model_dump()}
        episodes = [play(env, episode, spec["answers"], spec.get("self_certainty", {}))
                    for episode in spec["episodes"]]
    return {"validation": validate_running_environment(spec["base_url"]), "episodes": episodes}


if __name__ == "__main__":
    run(main)
