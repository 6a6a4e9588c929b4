"""Error model, limits and auth over a real server."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from reward_server.config import ServerSettings
from tests.conftest import REPO, assert_error

ITEM = {"completion": json.dumps({"rationale": "ok", "action": {"type": "terminate"}}),
        "ground_truth": {"type": "terminate"}}


def test_every_invalid_field_is_listed_once_in_body_order(rules_server) -> None:
    bad_text = {"type": "type_and_submit", "name": "q", "text": 5}
    items = [ITEM, {**ITEM, "ground_truth": bad_text}, ITEM,
             {**ITEM, "prompt": 7}, {**ITEM, "ground_truth": {"type": "scroll"}, "id": 1.5}]
    error = assert_error(httpx.post(rules_server.url + "/v1/rewards", json={"items": items}),
                         422, "items[1].ground_truth.text")
    # The prompt's union reports its bad value once per branch: listed once.
    assert [e["param"] for e in error["errors"]] == [
        "items[1].ground_truth.text", "items[3].prompt", "items[4].id",
        "items[4].ground_truth.type"]
    assert all(e["message"] for e in error["errors"])
    assert "(and 3 more: see errors)" in error["message"]


def test_listed_errors_are_capped_and_counted(rules_server) -> None:
    from reward_server.protocol import MAX_LISTED_ERRORS

    items = [{**ITEM, "ground_truth": {"type": "scroll"}}] * (MAX_LISTED_ERRORS + 10)
    error = assert_error(httpx.post(rules_server.url + "/v1/rewards", json={"items": items}),
                         422, "items[0].ground_truth.type")
    assert len(error["errors"]) == MAX_LISTED_ERRORS
    assert error["errors"][-1]["param"] == f"items[{MAX_LISTED_ERRORS - 1}].ground_truth.type"
    assert f"(and {MAX_LISTED_ERRORS + 9} more: see errors)" in error["message"]


def test_invalid_ground_truth_names_field_and_item(rules_server) -> None:
    items = [ITEM, {**ITEM, "ground_truth": {"type": "type_and_submit", "name": "q", "text": 5}}]
    response = httpx.post(rules_server.url + "/v1/rewards", json={"items": items})
    assert_error(response, 422, "items[1].ground_truth.text")
    unknown = httpx.post(rules_server.url + "/v1/rewards",
                         json={"items": [{**ITEM, "ground_truth": {"type": "scroll"}}]})
    assert_error(unknown, 422, "items[0].ground_truth.type")


def test_malformed_bodies_are_422(rules_server) -> None:
    assert_error(httpx.post(rules_server.url + "/v1/rewards", content=b"{not json",
                            headers={"content-type": "application/json"}), 422)
    assert_error(httpx.post(rules_server.url + "/v1/rewards",
                            json={"items": [{**ITEM, "completon": "typo"}]}), 422,
                 "items[0].completon")
    assert_error(httpx.post(rules_server.url + "/v1/rewards",
                            json={"items": [{**ITEM, "completion": 42}]}), 422,
                 "items[0].completion")
    assert_error(httpx.post(rules_server.url + "/v1/rewards",
                            json={"items": [ITEM], "config": {"similarity_threshold": 2}}), 422,
                 "config.similarity_threshold")


def test_wrong_method_is_405_with_allow(rules_server) -> None:
    """A 405 names the methods the route takes (Allow), as HTTP requires of it."""
    response = httpx.get(rules_server.url + "/v1/rewards")
    assert_error(response, 405)
    assert response.headers.get("allow") == "POST"


def test_model_source_without_model_is_422(rules_server) -> None:
    response = httpx.post(rules_server.url + "/v1/rewards",
                          json={"items": [ITEM], "self_certainty_source": "model"})
    assert_error(response, 422, "self_certainty_source")
    provided = httpx.post(rules_server.url + "/v1/rewards",
                          json={"items": [ITEM], "self_certainty_source": "provided"})
    assert_error(provided, 422, "items[0].self_certainty")


def test_limits_are_413(start_server) -> None:
    server = start_server(max_body_bytes=20_000, max_items=3)
    too_many = httpx.post(server.url + "/v1/rewards", json={"items": [ITEM] * 4})
    assert_error(too_many, 413, "items")
    big = json.dumps({"items": [{**ITEM, "completion": "x" * 30_000}]}).encode()
    assert_error(httpx.post(server.url + "/v1/rewards", content=big,
                            headers={"content-type": "application/json"}), 413, "body")

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(100):
            yield b" " * 1000

    streamed = httpx.post(server.url + "/v1/rewards", content=chunks(),
                          headers={"content-type": "application/json"})
    assert_error(streamed, 413, "body")
    assert httpx.post(server.url + "/v1/rewards", json={"items": [ITEM] * 3}).status_code == 200


def test_api_key_required_and_compared_exactly(start_server) -> None:
    key = "s3cret-key-0123456789"
    server = start_server(api_key=key)
    url = server.url + "/v1/rewards"
    body = {"items": [ITEM]}
    assert_error(httpx.post(url, json=body), 401)
    for wrong in ("wrong", key[:-1], key[:4], key + "x", key.upper()):
        assert_error(httpx.post(url, json=body, headers={"Authorization": f"Bearer {wrong}"}), 401)
    assert_error(httpx.post(url, json=body, headers={"Authorization": key}), 401)
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    # Probes and metrics stay public; configuration and reload do not.
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert httpx.get(server.url + "/metrics").status_code == 200
    assert_error(httpx.get(server.url + "/v1/config"), 401)
    assert_error(httpx.post(server.url + "/v1/reload", json={"model_dir": "/tmp"}), 401)
    # Authenticated, reload is still refused without a model and a reload root.
    refused = httpx.post(server.url + "/v1/reload", json={"model_dir": "/tmp"},
                         headers=server.headers)
    assert_error(refused, 403)


def test_non_loopback_bind_without_key_refuses_to_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reward_server.cli", "serve", "--host", "0.0.0.0",
         "--model", "none"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "requires an API key" in result.stderr


def test_probes_config_and_openapi(rules_server) -> None:
    assert httpx.get(rules_server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(rules_server.url + "/readyz").json()["status"] == "ready"
    config = httpx.get(rules_server.url + "/v1/config").json()
    assert config["config"]["dars"] == 1000.0 and len(config["config_hash"]) == 16
    schema = httpx.get(rules_server.url + "/openapi.json").json()
    assert {"/v1/rewards", "/v1/evaluate", "/get_reward", "/slime/reward"} <= set(schema["paths"])


def test_per_field_limits_name_the_field(rules_server) -> None:
    """A string id past 256 characters, a prompt past 1 MiB, a provided self-certainty
    that is not a finite number (Python's JSON reader accepts NaN and Infinity): 422s that
    name the field of the item."""
    url = rules_server.url + "/v1/rewards"
    provided = {"self_certainty_source": "provided"}
    cases = [
        ({"items": [ITEM, {**ITEM, "id": "x" * 257}]}, "items[1].id"),
        ({"items": [{**ITEM, "prompt": "p" * (1024 * 1024 + 1)}]}, "items[0].prompt"),
        ({"items": [{**ITEM, "self_certainty": float("inf")}], **provided},
         "items[0].self_certainty"),
        ({"items": [{**ITEM, "self_certainty": float("nan")}], **provided},
         "items[0].self_certainty"),
    ]
    for body, param in cases:
        response = httpx.post(url, content=json.dumps(body),
                              headers={"content-type": "application/json"})
        assert_error(response, 422, param)
    fine = httpx.post(url, json={"items": [{**ITEM, "id": "x" * 256, "prompt": "p" * 1024}]})
    assert fine.status_code == 200 and fine.json()["results"][0]["id"] == "x" * 256


def test_config_lists_the_per_item_limits_that_are_enforced(rules_server) -> None:
    """Each per-item limit GET /v1/config reports is the one applied: at the limit is
    scored, one past it is a 422 naming the field."""
    limits = httpx.get(rules_server.url + "/v1/config").json()["limits"]
    prompt, ids, id_chars = (limits[name] for name in
                             ("max_prompt_chars", "max_token_ids", "max_id_chars"))
    name_chars = limits["max_ground_truth_field_chars"]
    json_chars = limits["max_ground_truth_json_chars"]
    half = prompt // 2

    def messages(extra: int) -> list[dict]:  # the limit holds for all contents together
        return [{"role": "system", "content": "s" * half},
                {"role": "user", "content": "u" * (prompt - half + extra)}]

    def truth_json(extra: int) -> str:
        text = json.dumps({"type": "click", "name": "buy"})
        return text + " " * (json_chars - len(text) + extra)

    def click(chars: int) -> dict:
        return {"type": "click", "name": "n" * chars}

    for field, at_limit, over in [
        ("id", {"id": "i" * id_chars}, {"id": "i" * (id_chars + 1)}),
        ("prompt", {"prompt": "p" * prompt}, {"prompt": "p" * (prompt + 1)}),
        ("prompt", {"prompt": messages(0)}, {"prompt": messages(1)}),
        ("prompt_ids", {"prompt_ids": [1] * ids}, {"prompt_ids": [1] * (ids + 1)}),
        ("completion_ids", {"completion_ids": [1] * ids}, {"completion_ids": [1] * (ids + 1)}),
        ("ground_truth", {"ground_truth": truth_json(0)}, {"ground_truth": truth_json(1)}),
        ("ground_truth.name", {"ground_truth": click(name_chars)},
         {"ground_truth": click(name_chars + 1)}),
    ]:
        fine = httpx.post(rules_server.url + "/v1/rewards", json={"items": [{**ITEM, **at_limit}]})
        assert fine.status_code == 200, (field, fine.text[:300])
        refused = httpx.post(rules_server.url + "/v1/rewards", json={"items": [{**ITEM, **over}]})
        assert_error(refused, 422, f"items[0].{field}")
    ceiling = limits["max_completion_chars_ceiling"]
    for value, status in ((ceiling, 200), (ceiling + 1, 422)):
        reply = httpx.post(rules_server.url + "/v1/rewards",
                           json={"items": [ITEM], "config": {"max_completion_chars": value}})
        assert reply.status_code == status, reply.text[:300]


def test_key_file_and_loopback_rules(tmp_path, monkeypatch) -> None:
    """The key is read from its file, an empty file is refused by name, and only loopback
    addresses (by value, not by prefix) count as loopback."""
    monkeypatch.delenv("SHOP_R1_API_KEY", raising=False)
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    assert ServerSettings(api_key_file=str(key)).api_key == "s3cret"
    key.write_text(" \n")
    with pytest.raises(ValidationError, match="is empty"):
        ServerSettings(api_key_file=str(key))
    for host in ("localhost", "127.0.0.1", "127.8.9.10", "::1"):
        assert ServerSettings(host=host).loopback_only, host
    for host in ("127.0.0.1.evil.example", "127.example.com", "0.0.0.0", "10.0.0.1"):
        assert not ServerSettings(host=host).loopback_only, host
