"""POST /v1/rewards and /v1/evaluate against a real uvicorn process (REWARD_CONTRACT.md §2-§6)."""

from __future__ import annotations

import json

import httpx


def completion(action: dict, rationale: str = "I look for what I need.") -> str:
    return json.dumps({"rationale": rationale, "action": action})


CLICK_GT = {"type": "click", "name": "refinements.customer_reviews"}
SEARCH_GT = {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"}


def test_scores_every_item_in_order_with_components(rules_server) -> None:
    items = [
        {"id": "exact", "completion": completion(CLICK_GT), "ground_truth": CLICK_GT},
        {
            "id": 7,
            "completion": completion({**SEARCH_GT, "text": "geforce rtx 5090 rog"}),
            "ground_truth": json.dumps(SEARCH_GT),
        },
        {"id": "fenced", "completion": "```json\n{}\n```", "ground_truth": {"type": "terminate"}},
        {"completion": completion({"type": "terminate"}), "ground_truth": CLICK_GT},
    ]
    response = httpx.post(rules_server.url + "/v1/rewards", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["id"] for r in results] == ["exact", 7, "fenced", None]
    assert [r["reward"] for r in results] == [1001.0, 751.1, 0.0, 0.5]
    assert results[0]["components"] == {
        "format": 0.5, "type": 0.3, "attribute": 0.2, "value": 1000.0, "self_certainty": None
    }
    assert results[0]["score"] == 1.0
    # A badly formed completion is a score with a reason, never an HTTP error (§2).
    assert results[2]["format_ok"] is False
    assert results[2]["format_error"]["reason"] == "not_json"
    assert results[3]["action"]["type"] == "terminate"
    config = httpx.get(rules_server.url + "/v1/config").json()
    assert body["config_hash"] == config["config_hash"]
    assert body["timings"]["total_seconds"] >= 0


def test_config_overrides_change_reward_and_hash(rules_server) -> None:
    item = {"completion": completion(CLICK_GT), "ground_truth": CLICK_GT}
    base = httpx.post(rules_server.url + "/v1/rewards", json={"items": [item]}).json()
    tuned = httpx.post(
        rules_server.url + "/v1/rewards", json={"items": [item], "config": {"dars": 10}}
    ).json()
    assert base["results"][0]["reward"] == 1001.0
    assert tuned["results"][0]["reward"] == 11.0
    assert tuned["config_hash"] != base["config_hash"]


def test_provided_self_certainty_is_added_with_alpha(rules_server) -> None:
    item = {"completion": completion({"type": "terminate"}), "ground_truth": {"type": "terminate"},
            "self_certainty": 2.0}
    body = httpx.post(
        rules_server.url + "/v1/rewards",
        json={"items": [item], "self_certainty_source": "provided"},
    ).json()
    result = body["results"][0]
    assert result["components"]["self_certainty"] == 2.0
    assert abs(result["reward"] - (0.8 + 0.005 * 2.0)) < 1e-12
    assert result["certainty"]["source"] == "provided"


def test_empty_batch_is_an_empty_answer(rules_server) -> None:
    response = httpx.post(rules_server.url + "/v1/rewards", json={"items": []})
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_large_batch_keeps_order(rules_server) -> None:
    names = [f"item_{i}" for i in range(600)]
    items = [
        {"id": i, "completion": completion({"type": "click", "name": name}),
         "ground_truth": {"type": "click", "name": names[(i * 7) % 600]}}
        for i, name in enumerate(names)
    ]
    results = httpx.post(rules_server.url + "/v1/rewards", json={"items": items}).json()["results"]
    assert [r["id"] for r in results] == list(range(600))
    for i, result in enumerate(results):
        assert result["reward"] == (1001.0 if (i * 7) % 600 == i else 1.0)


def test_evaluate_reports_section6_metrics(rules_server) -> None:
    items = [
        {"completion": completion(CLICK_GT), "ground_truth": CLICK_GT},
        {"completion": completion({"type": "terminate"}), "ground_truth": CLICK_GT},
        {"completion": "not json", "ground_truth": {"type": "terminate"}},
        {"completion": completion({"type": "terminate"}), "ground_truth": {"type": "terminate"}},
    ]
    response = httpx.post(rules_server.url + "/v1/evaluate", json={"items": items})
    assert response.status_code == 200, response.text
    metrics = response.json()["metrics"]
    assert metrics["count"] == 4
    assert metrics["exact_accuracy"] == 0.5
    assert metrics["type_accuracy"] == 0.5
    assert metrics["per_type"]["click"]["exact_accuracy"] == 0.5
    assert metrics["per_type"]["terminate"]["f1"] == 0.5  # 2TP / (2TP + FP + FN) = 2 / 4


def _keys(value: object) -> object:
    """The nested key structure of a JSON value (lists by their first element)."""
    if isinstance(value, dict):
        return {key: _keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return None


def test_response_is_exactly_the_documented_schema(rules_server) -> None:
    """The body is built without pydantic for speed: it must still be the OpenAPI
    RewardResponse, field for field, for every kind of item (including the provided
    certainty source and a lone surrogate echoed in the parsed action)."""
    from reward_server.protocol import RewardResponse

    items = [
        {"id": "click", "completion": completion(CLICK_GT), "ground_truth": CLICK_GT},
        {"id": 2, "completion": completion(SEARCH_GT), "ground_truth": SEARCH_GT},
        {"completion": completion({"type": "terminate"}), "ground_truth": {"type": "terminate"}},
        {"completion": "not json", "ground_truth": CLICK_GT},
        {
            "completion": '{"rationale": "x", "action": {"type": "click", "name": "\\ud800"}}',
            "ground_truth": CLICK_GT,
        },
    ]
    for source in ("none", "provided"):
        certainty = {"self_certainty": 1.5} if source == "provided" else {}
        sent = [{**item, **certainty} for item in items]
        response = httpx.post(
            rules_server.url + "/v1/rewards",
            json={"items": sent, "self_certainty_source": source},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        typed = RewardResponse.model_validate(body)
        # Same fields, same nesting: nothing the schema lacks, nothing it promises missing.
        for got, documented in zip(
            body["results"], typed.model_dump(mode="json")["results"], strict=True
        ):
            assert _keys(got) == _keys(documented)
            assert got == documented
        assert body["results"][0]["action"] == {
            "type": "click", "name": CLICK_GT["name"], "text": None
        }
        assert body["results"][2]["action"] == {"type": "terminate", "name": None, "text": None}
        assert body["results"][3]["format_error"]["reason"] == "not_json"
        assert body["results"][4]["action"]["name"] == "\\ud800"
        expected_certainty = 1.5 if source == "provided" else None
        assert body["results"][0]["components"]["self_certainty"] == expected_certainty
        assert body["results"][3]["components"]["self_certainty"] is None
        assert body["results"][0]["certainty"]["source"] == source


def test_provided_self_certainty_of_a_format_failure_is_null_with_its_reason(rules_server):
    """REWARD_CONTRACT.md §2/§4: a failed format earns no self-certainty credit; the value
    the trainer sent is dropped, and the response says why rather than a bare null."""
    items = [
        {"completion": completion({"type": "terminate"}), "ground_truth": {"type": "terminate"},
         "self_certainty": 2.0},
        {"completion": "not json", "ground_truth": {"type": "terminate"}, "self_certainty": 2.0},
    ]
    body = httpx.post(
        rules_server.url + "/v1/rewards",
        json={"items": items, "self_certainty_source": "provided"},
    ).json()
    kept, dropped = body["results"]
    assert kept["components"]["self_certainty"] == 2.0
    assert kept["certainty"]["reason"] is None
    assert (dropped["reward"], dropped["score"], dropped["components"]["self_certainty"]) == (
        0.0, 0.0, None
    )
    assert dropped["certainty"] == {**kept["certainty"], "reason": "format_failure"}


def test_provided_certainty_is_needed_only_where_the_format_holds(rules_server):
    """REWARD_CONTRACT.md §4: a trainer has no rationale to measure in an answer whose format
    fails, so such an item may come without a value; a well-formed one may not."""
    items = [
        {"completion": completion({"type": "terminate"}), "ground_truth": {"type": "terminate"},
         "self_certainty": 2.0},
        {"completion": "not json", "ground_truth": {"type": "terminate"}},
    ]
    body = httpx.post(
        rules_server.url + "/v1/rewards",
        json={"items": items, "self_certainty_source": "provided"},
    ).json()
    kept, failed = body["results"]
    assert kept["components"]["self_certainty"] == 2.0
    assert (failed["reward"], failed["certainty"]["reason"]) == (0.0, "format_failure")
    items[0].pop("self_certainty")
    refused = httpx.post(
        rules_server.url + "/v1/rewards",
        json={"items": items, "self_certainty_source": "provided"},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "items[0].self_certainty"
