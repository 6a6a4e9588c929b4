"""The Shop-R1 resources server built on NeMo Gym's own SimpleResourcesServer, its own
web app (``setup_webserver``: /verify, /seed_session, /aggregate_metrics, the session
middleware) served by uvicorn on a loopback port, and real ``POST /verify`` requests in
NeMo Gym's request shape.

spec: {"config": {server config fields}, "split": "train" | "test",
       "items": [{"id": row id, "completion", "self_certainty"?, "ground_truth"?}]}
      (the dataset rows are written by shop_r1_nemo_gym.data from the task's split;
      "ground_truth" replaces the row's)
out:  {"responses": [verify response JSON | {"status", "body"}], "aggregate": ...}
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn
from driver_io import run
from nemo_gym.config_types import BaseServerConfig
from nemo_gym.global_config import ROLLOUT_INDEX_KEY_NAME, TASK_INDEX_KEY_NAME
from nemo_gym.openai_utils import NeMoGymResponse
from nemo_gym.server_utils import ServerClient
from omegaconf import OmegaConf
from shop_r1_env import TaskSource, load_rows
from shop_r1_nemo_gym.app import ShopR1ResourcesServer, ShopR1ResourcesServerConfig
from shop_r1_nemo_gym.data import gym_row


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_response(text: str) -> dict:
    """A Responses-API answer holding ``text``, as NeMo Gym's model servers return it."""
    return NeMoGymResponse(
        id="resp_shop_r1", created_at=0.0, model="policy", object="response",
        output=[{"id": "msg_shop_r1", "type": "message", "role": "assistant",
                 "status": "completed",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        parallel_tool_calls=False, tool_choice="auto", tools=[],
    ).model_dump(mode="json")


def main(spec: dict) -> dict:
    port = free_port()
    config = ShopR1ResourcesServerConfig(
        host="127.0.0.1", port=port, entrypoint="app.py", name="shop_r1", **spec["config"]
    )
    # No head server here: the client is only read by servers that call other servers.
    server_client = ServerClient(
        head_server_config=BaseServerConfig(host="127.0.0.1", port=free_port()),
        global_config_dict=OmegaConf.create({}),
    )
    server = ShopR1ResourcesServer(config=config, server_client=server_client)
    # The app as NeMo Gym's run_webserver assembles it (without its Ray cluster).
    app = server.setup_webserver()
    server.setup_liveness(app)
    server.setup_exception_middleware(app)
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not web.started:
        time.sleep(0.05)
    responses = []
    with httpx.Client(base_url=url, timeout=60) as http:
        rows = {row.id: gym_row(row) for row in load_rows(TaskSource(), spec["split"])}
        for item in spec["items"]:
            extra = {k: item[k] for k in ("self_certainty", "ground_truth") if k in item}
            body = {**rows[item["id"]], **extra, "response": model_response(item["completion"])}
            answer = http.post("/verify", json=body)
            responses.append(
                answer.json() if answer.status_code == 200
                else {"status": answer.status_code, "body": answer.text}
            )
        # Each rollout's indices, as NeMo Gym's rollout collection attaches them.
        verified = [
            {**r, TASK_INDEX_KEY_NAME: index, ROLLOUT_INDEX_KEY_NAME: 0}
            for index, r in enumerate(responses) if "reward" in r
        ]
        aggregate = http.post("/aggregate_metrics", json={"verify_responses": verified})
    web.should_exit = True
    thread.join(10)
    return {"responses": responses, "aggregate": aggregate.json()}


if __name__ == "__main__":
    run(main)
