"""The service with the embedded SmolLM2 scoring model, over a real uvicorn process:
self-certainty in responses (REWARD_CONTRACT.md §4-5), 429 / 503 / 504 from the scorer queue."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.conftest import launch_server

pytestmark = pytest.mark.slow

PROMPT = "<html><body><input name=\"search_input\"/><a name=\"add_to_cart.buy_now\"/></body></html>"


def item(rationale: str, action: dict, truth: dict, item_id: int | None = None) -> dict:
    return {"id": item_id, "prompt": PROMPT, "ground_truth": truth,
            "completion": json.dumps({"rationale": rationale, "action": action})}


SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "usb c cable"}
ITEMS = [
    item("I need a cable, so I search for one.", SEARCH, SEARCH, 0),
    item("This is the one I want; I buy it now.", {"type": "click", "name": "add_to_cart.buy_now"},
         {"type": "click", "name": "add_to_cart.buy_now"}, 1),
    {"id": 2, "prompt": PROMPT, "completion": "no json", "ground_truth": {"type": "terminate"}},
]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory):
    server = launch_server(tmp_path_factory.mktemp("model-server"), model="embedded",
                           max_queue_items=16, max_wait_ms=20)
    yield server
    server.stop()


def test_self_certainty_is_computed_and_added_with_alpha(model_server) -> None:
    response = httpx.post(model_server.url + "/v1/rewards", json={"items": ITEMS}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "SmolLM2-135M-Instruct"
    first, second, broken = body["results"]
    for result, rules in ((first, 1001.1), (second, 1001.0)):
        certainty = result["components"]["self_certainty"]
        assert result["certainty"]["source"] == "model" and certainty is not None
        assert 0 < certainty < 20 and result["certainty"]["rationale_tokens"] > 0
        assert result["reward"] == pytest.approx(rules + 0.005 * certainty, abs=1e-9)
    # A format failure earns nothing, self-certainty included, and says why.
    assert broken["reward"] == 0.0 and broken["components"]["self_certainty"] is None
    assert broken["certainty"]["reason"] == "format_failure"

    # Without the prompt the value is still computed, but labelled as approximate.
    no_prompt = {key: value for key, value in ITEMS[0].items() if key != "prompt"}
    result = httpx.post(model_server.url + "/v1/rewards", json={"items": [no_prompt]},
                        timeout=300).json()["results"][0]
    assert result["components"]["self_certainty"] is not None
    assert result["certainty"]["approximate"] is True
    assert result["certainty"]["reason"] == "no_prompt"
    assert first["certainty"]["approximate"] is False and first["certainty"]["reason"] is None

    # An item's value does not depend on its batch mates (REWARD_CONTRACT.md §4).
    alone = httpx.post(model_server.url + "/v1/rewards", json={"items": [ITEMS[1]]},
                       timeout=300).json()["results"][0]["components"]["self_certainty"]
    assert alone == pytest.approx(second["components"]["self_certainty"], rel=1e-4)

    rules_only = httpx.post(model_server.url + "/v1/rewards",
                            json={"items": ITEMS, "self_certainty_source": "none"}).json()
    assert [r["reward"] for r in rules_only["results"]] == [1001.1, 1001.0, 0.0]

    metrics = httpx.get(model_server.url + "/metrics").text
    assert "reward_scorer_batch_tokens_count" in metrics
    assert "reward_self_certainty_value_count" in metrics


def test_queue_full_is_429_with_retry_after(model_server) -> None:
    """Requests that each fit the queue's 16 places but not all together: the ones that
    find it full get 429 with Retry-After (worth retrying); one request larger than the
    whole queue gets 413 (it never fits)."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(
                client.post(model_server.url + "/v1/rewards", json={"items": [ITEMS[0]] * 12})
                for _ in range(6)
            ))

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} <= {200, 429}
    refused = [r for r in responses if r.status_code == 429]
    assert refused and any(r.status_code == 200 for r in responses)
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["type"] == "overloaded"
    too_large = httpx.post(model_server.url + "/v1/rewards", json={"items": [ITEMS[0]] * 40},
                           timeout=60)
    assert too_large.status_code == 413, too_large.text
    assert "Retry-After" not in too_large.headers


def test_deadline_passed_in_queue_is_504(model_server) -> None:
    response = httpx.post(model_server.url + "/v1/rewards", json={"items": ITEMS[:2]},
                          headers={"X-Request-Timeout": "0.001"}, timeout=60)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "deadline_exceeded"


def test_not_ready_is_503_until_the_model_is_warm(tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO, free_port

    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_server.cli", "serve", "--model", "embedded", "--port",
         str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    statuses: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and 200 not in statuses:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            statuses.append(ready.status_code)
            if ready.status_code == 503:
                assert int(ready.headers["Retry-After"]) >= 1
                scored = httpx.post(f"http://127.0.0.1:{port}/v1/rewards",
                                    json={"items": ITEMS[:1]}, timeout=30)
                assert scored.status_code in (503, 200)
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    assert statuses and statuses[0] == 503 and statuses[-1] == 200, statuses
