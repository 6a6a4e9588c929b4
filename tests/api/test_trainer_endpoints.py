"""Trainer-native endpoints, with bodies shaped as the trainers send them (their own code
drives these routes in ``tests/trainers``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REPO, free_port, metric_total

LOG_KEYS = {
    "format", "type", "attribute", "value", "format_ok",
    "self_certainty", "self_certainty_missing", "self_certainty_approximate",
}

PROMPT = (
    "<|im_start|>system\nYou are a shopper.<|im_end|>\n<|im_start|>user\n"
    "<html><input name=\"search_input\"/></html><|im_end|>\n<|im_start|>assistant\n"
)
ANSWER = json.dumps({
    "rationale": "I want a graphics card, so I search for it.",
    "action": {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"},
})
LABEL = json.dumps({"type": "type_and_submit", "name": "search_input",
                    "text": "geforce gtx 5090 rog"})


def test_openrlhf_one_sample_request(rules_server) -> None:
    # OpenRLHF v0.11 URL mode: one POST per sample, lists of length 1, query keeps the
    # special tokens (the end-of-turn marker after the answer).
    body = {"query": [PROMPT + ANSWER + "<|im_end|>"], "prompts": [PROMPT], "labels": [LABEL]}
    response = httpx.post(rules_server.url + "/get_reward", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["rewards"] == [1001.1]
    assert payload["scores"] == [1.0]
    logs = payload["extra_logs"]
    assert logs["value"] == [1000.1] and logs["format_ok"] == [1.0]
    assert all(len(values) == 1 for values in logs.values())


def test_openrlhf_every_response_has_the_same_log_keys(rules_server) -> None:
    """OpenRLHF concatenates one-sample responses' logs: a format failure's keys must be
    its neighbours' keys (a missing self-certainty is 0.0 with a flag, never absent)."""
    bodies = [
        {"query": [PROMPT + ANSWER], "prompts": [PROMPT], "labels": [LABEL]},
        {"query": [PROMPT + "not json<|im_end|>"], "prompts": [PROMPT], "labels": [LABEL]},
        {"query": [], "prompts": [], "labels": []},
    ]
    replies = [httpx.post(rules_server.url + "/get_reward", json=b).json() for b in bodies]
    assert [set(r["extra_logs"]) for r in replies] == [LOG_KEYS] * 3
    failed = replies[1]["extra_logs"]
    assert failed["format_ok"] == [0.0] and failed["self_certainty_missing"] == [1.0]
    assert failed["self_certainty"] == [0.0] and failed["self_certainty_approximate"] == [0.0]
    assert replies[1]["rewards"] == [0.0]


def test_openrlhf_prompt_cut_from_the_left_still_scores(rules_server) -> None:
    """OpenRLHF keeps the last tokens of an over-long prompt; decoding them may turn a
    split multi-byte character into U+FFFD at the very start."""
    long_prompt = "<|im_start|>user\n" + "Größe 💡 " * 300 + PROMPT
    kept = "\ufffd" + long_prompt[-700:]
    body = {"query": [kept + ANSWER + "<|im_end|>"], "prompts": [long_prompt], "labels": [LABEL]}
    reply = httpx.post(rules_server.url + "/get_reward", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["rewards"] == [1001.1]
    elsewhere = {"query": ["some other text" + ANSWER], "prompts": [PROMPT], "labels": [LABEL]}
    lost = httpx.post(rules_server.url + "/get_reward", json=elsewhere)
    assert lost.status_code == 422 and lost.json()["error"]["param"] == "query[0]"


def test_openrlhf_batch_and_empty_lists(rules_server) -> None:
    body = {
        "query": [PROMPT + ANSWER, PROMPT + "I refuse."],
        "prompts": [PROMPT, PROMPT],
        "labels": [LABEL, json.dumps({"type": "terminate"})],
    }
    payload = httpx.post(rules_server.url + "/get_reward", json=body).json()
    assert payload["rewards"] == [1001.1, 0.0]
    empty = httpx.post(rules_server.url + "/get_reward",
                       json={"query": [], "prompts": [], "labels": []})
    assert empty.status_code == 200
    assert empty.json()["rewards"] == [] and empty.json()["scores"] == []


def test_trainer_requests_are_counted_by_route(rules_server) -> None:
    def items_metric(name: str, route: str) -> float:
        text = httpx.get(rules_server.url + "/metrics").text
        return metric_total(text, f"reward_request_items_{name}", route=route)

    routes = ("/get_reward", "/slime/reward")
    before = {(name, route): items_metric(name, route) for name in ("count", "sum")
              for route in routes}
    body = {"query": [PROMPT + ANSWER] * 2, "prompts": [PROMPT] * 2, "labels": [LABEL] * 2}
    httpx.post(rules_server.url + "/get_reward", json=body).raise_for_status()
    sample = {"prompt": PROMPT, "response": ANSWER, "label": LABEL}
    httpx.post(rules_server.url + "/slime/reward", json=sample).raise_for_status()
    after = {key: items_metric(*key) for key in before}
    delta = {key: after[key] - before[key] for key in before}
    assert delta == {("count", "/get_reward"): 1, ("sum", "/get_reward"): 2,
                     ("count", "/slime/reward"): 1, ("sum", "/slime/reward"): 1}


def test_openrlhf_mismatched_lengths_and_bad_labels_are_422(rules_server) -> None:
    short = httpx.post(rules_server.url + "/get_reward",
                       json={"query": [PROMPT + ANSWER], "prompts": [], "labels": [LABEL]})
    assert short.status_code == 422
    assert short.json()["error"]["param"] == "prompts"
    unlabelled = httpx.post(rules_server.url + "/get_reward",
                            json={"query": [PROMPT + ANSWER], "prompts": [PROMPT], "labels": [""]})
    assert unlabelled.status_code == 422
    assert unlabelled.json()["error"]["param"] == "labels[0]"
    assert "--data.label_key" in unlabelled.json()["error"]["message"]
    bad = httpx.post(
        rules_server.url + "/get_reward",
        json={"query": [PROMPT + ANSWER] * 2, "prompts": [PROMPT] * 2,
              "labels": [LABEL, json.dumps({"type": "click"})]},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "labels[1].name"


def test_slime_remote_rm_sample(rules_server) -> None:
    body = {"prompt": PROMPT, "response": ANSWER, "label": LABEL}
    response = httpx.post(rules_server.url + "/slime/reward", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["reward"] == 1001.1
    assert {"score", "format", "type", "attribute", "value", "self_certainty"} <= payload.keys()
    messages = [{"role": "user", "content": "<html></html>"}]
    as_messages = httpx.post(rules_server.url + "/slime/reward",
                             json={"prompt": messages, "response": ANSWER, "label": LABEL})
    assert as_messages.json()["reward"] == 1001.1
    no_label = httpx.post(rules_server.url + "/slime/reward",
                          json={"prompt": PROMPT, "response": ANSWER, "label": None})
    assert no_label.status_code == 422 and no_label.json()["error"]["param"] == "label"
    assert "--label-key" in no_label.json()["error"]["message"]


def test_a_bad_prompt_is_named_as_the_prompt_not_the_label(rules_server) -> None:
    """The label is fine here: the error must send the user to the prompt they sent."""
    message_with_parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    slime = httpx.post(rules_server.url + "/slime/reward",
                       json={"prompt": message_with_parts, "response": ANSWER, "label": LABEL})
    assert slime.status_code == 422
    assert slime.json()["error"]["param"].startswith("prompt"), slime.json()
    too_long = "x" * 1_048_577  # over the prompt limit of /v1/rewards
    openrlhf = httpx.post(
        rules_server.url + "/get_reward",
        json={"query": [PROMPT + ANSWER, too_long + ANSWER], "prompts": [PROMPT, too_long],
              "labels": [LABEL, LABEL]},
    )
    assert openrlhf.status_code == 422
    assert openrlhf.json()["error"]["param"] == "prompts[1]", openrlhf.json()


@pytest.mark.slow
def test_a_model_that_failed_to_load_answers_503_with_the_error(tmp_path) -> None:
    """Waiting for readiness stops as soon as the load fails: the reply says why."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_server.cli", "serve", "--port", str(port),
             "--model", str(broken)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        body = {"query": [PROMPT + ANSWER], "prompts": [PROMPT], "labels": [LABEL]}
        deadline = time.monotonic() + 120
        while True:  # until the process serves (its model then loads, and fails)
            try:
                reply = httpx.post(url + "/get_reward", json=body, timeout=300,
                                   headers={"X-Request-Timeout": "300"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        # Answered when the load failed, not when the 300 s deadline passed.
        assert reply.status_code == 503
        assert "failed to load" in reply.json()["error"]["message"]
        again = httpx.post(url + "/slime/reward",
                           json={"prompt": PROMPT, "response": ANSWER, "label": LABEL})
        assert again.status_code == 503 and "failed to load" in again.json()["error"]["message"]
    finally:
        process.terminate()
        process.wait(30)
