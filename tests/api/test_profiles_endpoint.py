"""Reward profiles over real HTTP (REWARD_CONTRACT.md §8): per server, per request (raw,
through the client and through the TRL adapter's setting), and GET /v1/config."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from client import RewardClient
from reward_server.config import PROFILES
from tests.conftest import assert_error
from trainer_adapter.trl import shop_r1_reward

CLICK = {"type": "click", "name": "refinements.customer_reviews"}
NEAR = {"type": "click", "name": "refinements.reviews"}  # sim 0.8: partial, not exact


def item(action: dict, truth: dict = CLICK, **extra: object) -> dict:
    completion = json.dumps({"rationale": "I check the reviews.", "action": action})
    return {"completion": completion, "ground_truth": truth, **extra}


ITEMS = [item(CLICK, self_certainty=2.0), item(NEAR, self_certainty=2.0)]
# (profile, rewards of ITEMS with provided self-certainty 2.0), by hand from §3, §5 and §8.
EXPECTED = {
    "paper": [1001.01, 801.01],
    "no_dars": [2.01, 1.81],
    "binary": [1.5, 0.5],
    "no_format": [1000.51, 800.51],
    "no_self_certainty": [1001.0, 801.0],
}


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/rewards", json=body, timeout=30)


def test_each_request_picks_its_profile(rules_server) -> None:
    config = httpx.get(rules_server.url + "/v1/config").json()
    assert config["profile"] == "paper"
    assert config["profiles"] == sorted(PROFILES) == sorted(EXPECTED)
    hashes = {}
    for profile, rewards in EXPECTED.items():
        body = {"items": ITEMS, "profile": profile, "self_certainty_source": "provided"}
        response = post(rules_server.url, body)
        assert response.status_code == 200, response.text
        scored = response.json()
        assert [r["reward"] for r in scored["results"]] == pytest.approx(rewards), profile
        assert scored["config_hash"] == PROFILES[profile].config_hash()
        hashes[profile] = scored["config_hash"]
    assert len(set(hashes.values())) == len(hashes)
    assert hashes["paper"] == config["config_hash"]
    binary = post(rules_server.url, {"items": ITEMS, "profile": "binary"}).json()["results"]
    assert binary[0]["components"] == {
        "format": 0.5, "type": 0.0, "attribute": 0.0, "value": 1.0, "self_certainty": None
    }
    assert [r["score"] for r in binary] == pytest.approx([1.0, 1 / 3])


def test_request_overrides_apply_on_top_of_the_requests_profile(rules_server) -> None:
    body = {"items": ITEMS, "profile": "binary", "config": {"exact_action_weight": 4.0}}
    scored = post(rules_server.url, body).json()
    assert [r["reward"] for r in scored["results"]] == [4.5, 0.5]
    expected = PROFILES["binary"].with_overrides({"exact_action_weight": 4.0})
    assert scored["config_hash"] == expected.config_hash()
    # The binary reward is reachable through overrides alone, on any profile.
    overrides = {"action_reward": "binary", "alpha": 0.0}
    alone = post(rules_server.url, {"items": ITEMS, "config": overrides}).json()
    assert alone["config_hash"] == PROFILES["binary"].config_hash()


def test_an_unknown_profile_is_a_422_naming_it(rules_server) -> None:
    error = assert_error(post(rules_server.url, {"items": ITEMS, "profile": "binry"}), 422,
                         "profile")
    assert "binry" in error["message"] and "binary" in error["message"]
    assert_error(post(rules_server.url, {"items": ITEMS, "profile": 3}), 422, "profile")


def test_a_server_started_with_a_profile_reports_and_applies_it(start_server) -> None:
    server = start_server(profile="no_format")
    config = httpx.get(server.url + "/v1/config").json()
    assert config["profile"] == "no_format"
    assert config["config"]["format_weight"] == 0.0
    assert config["config_hash"] == PROFILES["no_format"].config_hash()
    body = {"items": ITEMS, "self_certainty_source": "provided"}
    scored = post(server.url, body).json()
    assert [r["reward"] for r in scored["results"]] == pytest.approx(EXPECTED["no_format"])
    # A request's profile replaces the server's.
    scored = post(server.url, {**body, "profile": "paper"}).json()
    assert [r["reward"] for r in scored["results"]] == pytest.approx(EXPECTED["paper"])


def test_the_client_and_the_trl_adapter_send_a_profile(rules_server, monkeypatch) -> None:
    with RewardClient(rules_server.url) as client:
        batch = client.score(ITEMS, profile="binary", self_certainty_source="provided")
    assert [r.reward for r in batch] == [1.5, 0.5]
    assert batch.config_hash == PROFILES["binary"].config_hash()

    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "none")
    monkeypatch.setenv("SHOP_R1_REWARD_PROFILE", "no_dars")
    completions = [entry["completion"] for entry in ITEMS]
    rewards = asyncio.run(
        shop_r1_reward(prompts=["p", "p"], completions=completions, ground_truth=[CLICK] * 2)
    )
    assert rewards == pytest.approx([2.0, 1.8])
