"""Trainer-native endpoints, with bodies exactly as the trainers send them (TRAINERS.md)."""

from __future__ import annotations

import json

import httpx

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


def test_openrlhf_mismatched_lengths_and_bad_labels_are_422(rules_server) -> None:
    short = httpx.post(rules_server.url + "/get_reward",
                       json={"query": [PROMPT + ANSWER], "prompts": [], "labels": [LABEL]})
    assert short.status_code == 422
    assert short.json()["error"]["param"] == "prompts"
    unlabelled = httpx.post(rules_server.url + "/get_reward",
                            json={"query": [PROMPT + ANSWER], "prompts": [PROMPT], "labels": [""]})
    assert unlabelled.status_code == 422
    assert unlabelled.json()["error"]["param"] == "labels[0]"
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
