"""OpenRLHF ``.py`` mode, verl (batch and async per-sample) and slime adapters against a
live rules-only service, with inputs shaped exactly as those trainers build them
(the trainers' own code drives the same adapters in ``tests/trainers``)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from client import BadRequestError
from tests.client.conftest import request_count
from trainer_adapter import openrlhf, slime, verl

CLICK = {"type": "click", "name": "refinements.customer_reviews"}
SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"}
TERMINATE = {"type": "terminate"}


def answer(action: dict, rationale: str = "I look for reviews first.") -> str:
    return json.dumps({"rationale": rationale, "action": action})


ROWS = [  # (response, ground truth, reward): REWARD_CONTRACT.md §7
    (answer(CLICK), CLICK, 1001.0),
    (answer({**SEARCH, "text": "gaming laptop"}), SEARCH, 1.1),
    (answer(TERMINATE), TERMINATE, 0.8),
    ("```json\n" + answer(TERMINATE) + "\n```", TERMINATE, 0.0),
    (answer(TERMINATE), {"type": "click", "name": "buy_now"}, 0.5),
]
COMPONENTS = {
    "format", "type", "attribute", "value", "format_ok",
    "self_certainty", "self_certainty_missing", "self_certainty_approximate",
}


def chat_prompt(user: str) -> str:
    """What OpenRLHF decodes as the prompt: SmolLM2's chat template, special tokens kept."""
    return (
        "<|im_start|>system\nYou simulate a shopper.<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture
def service_env(rules_server, monkeypatch):
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "none")
    return rules_server


def openrlhf_batch() -> tuple[list[str], list[str], list[str]]:
    prompts = [chat_prompt(f"step {i}: page html ...") for i in range(len(ROWS))]
    queries = [
        p + response + "<|im_end|>" for p, (response, _, _) in zip(prompts, ROWS, strict=True)
    ]
    labels = [json.dumps(truth) for _, truth, _ in ROWS]  # --data.label_key column
    return queries, prompts, labels


def test_openrlhf_reward_func_matches_url_mode(service_env):
    import torch  # inside OpenRLHF torch is always loaded: tensors come back

    queries, prompts, labels = openrlhf_batch()
    before = request_count(service_env.url, status="200")
    out = openrlhf.reward_func(queries, prompts, labels)
    assert request_count(service_env.url, status="200") - before == 1  # one call per batch
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert isinstance(out["rewards"], torch.Tensor)
    assert out["rewards"].tolist() == pytest.approx([r for _, _, r in ROWS])
    assert all(0 <= s <= 1 for s in out["scores"].tolist())
    assert set(out["extra_logs"]) == COMPONENTS
    assert all(len(v) == len(ROWS) for v in out["extra_logs"].values())
    assert out["extra_logs"]["format_ok"].tolist() == [1, 1, 1, 0, 1]

    # URL mode (the server's own /get_reward) gives the same numbers for the same batch.
    url_mode = httpx.post(
        service_env.url + "/get_reward",
        json={"query": queries, "prompts": prompts, "labels": labels},
        timeout=30,
    ).json()
    assert url_mode["rewards"] == pytest.approx(out["rewards"].tolist())
    assert url_mode["scores"] == pytest.approx(out["scores"].tolist())
    assert set(url_mode["extra_logs"]) == set(out["extra_logs"])  # one key set, both modes
    for name, values in url_mode["extra_logs"].items():
        assert values == pytest.approx(out["extra_logs"][name].tolist()), name


def test_openrlhf_reward_func_left_truncated_prompt(service_env):
    """OpenRLHF cuts an over-long prompt from the left: the query then starts inside it."""
    queries, prompts, labels = openrlhf_batch()
    long_prompts = [chat_prompt("page html " * 200 + f"step {i}") for i in range(len(ROWS))]
    full = [lp + q[len(p) :] for lp, p, q in zip(long_prompts, prompts, queries, strict=True)]
    cut = [query[len(lp) - 300 :] for query, lp in zip(full, long_prompts, strict=True)]
    out = openrlhf.reward_func(cut, long_prompts, labels)
    assert out["rewards"].tolist() == pytest.approx([r for _, _, r in ROWS])
    # No self-certainty here (rules-only service): nothing is flagged approximate.
    assert out["extra_logs"]["self_certainty_approximate"].tolist() == [0.0] * len(ROWS)
    items, was_cut = openrlhf.build_items(cut, long_prompts, labels)
    assert was_cut == [True] * len(ROWS)
    assert all(item.prompt == p[-300:] for item, p in zip(items, long_prompts, strict=True))


def test_openrlhf_reward_func_errors_say_what_to_do(service_env):
    queries, prompts, labels = openrlhf_batch()
    with pytest.raises(ValueError, match=r"--data\.label_key"):
        openrlhf.reward_func(queries, prompts, [""] * len(queries))
    with pytest.raises(ValueError, match="cannot tell where the response starts"):
        openrlhf.reward_func(["unrelated text"], prompts[:1], labels[:1])
    with pytest.raises(BadRequestError) as caught:
        openrlhf.reward_func(queries, prompts, [*labels[:-1], '{"type": "bogus"}'])
    assert caught.value.param == f"items[{len(ROWS) - 1}].ground_truth.type"
    assert set(openrlhf.reward_func([], [], [])["extra_logs"]) == COMPONENTS


def verl_batch() -> dict:
    """What verl's BatchRewardManager passes: numpy object arrays from non_tensor_batch."""
    return {
        "data_sources": np.array(["shop_r1"] * len(ROWS), dtype=object),
        "solution_strs": [response for response, _, _ in ROWS],  # response only, decoded
        "ground_truths": [truth for _, truth, _ in ROWS],  # reward_model.ground_truth
        "extra_infos": np.array(
            [{"index": i, "split": "train", "prompt": f"step {i}"} for i in range(len(ROWS))],
            dtype=object,
        ),
    }


def test_verl_batch_compute_score(service_env):
    before = request_count(service_env.url, status="200")
    results = verl.compute_score_batch(**verl_batch(), extra_kwarg="from reward_kwargs")
    assert request_count(service_env.url, status="200") - before == 1
    assert [r["score"] for r in results] == pytest.approx([r for _, _, r in ROWS])
    keys = {frozenset(r) for r in results}
    assert len(keys) == 1  # verl needs the same key set for every sample
    assert {"score", "score_normalized", *COMPONENTS} == set(results[0])
    # Not computed (rules-only service): flagged missing, and 0.0 so that means stay finite.
    assert all(r["self_certainty_missing"] == 1.0 for r in results)
    assert all(r["self_certainty"] == 0.0 for r in results)


async def test_verl_async_compute_score_coalesces(service_env, monkeypatch):
    monkeypatch.setenv("SHOP_R1_REWARD_BATCH_WAIT_MS", "20")
    count = 60
    before = request_count(service_env.url, status="200")
    calls = [
        verl.compute_score(
            "shop_r1",
            ROWS[i % len(ROWS)][0],
            ROWS[i % len(ROWS)][1],
            {"index": i, "prompt": f"step {i}"},
        )
        for i in range(count)
    ]
    results = await asyncio.gather(*calls)
    assert [r["score"] for r in results] == pytest.approx(
        [ROWS[i % len(ROWS)][2] for i in range(count)]
    )
    assert request_count(service_env.url, status="200") - before <= 3  # not 60 requests

    # Bad samples fail alone, each with its own field; their neighbours in the same
    # coalesced batch still score. The server names every bad one in a single 422, so one
    # resend is enough however many there are.
    bad_truths = {1: {"type": "bogus"}, 3: {"type": "type_and_submit", "name": "q"},
                  4: {"type": "click", "name": ""}}
    refused = request_count(service_env.url, status="422")
    scored = request_count(service_env.url, status="200")
    outcomes = await asyncio.gather(*(
        verl.compute_score("shop_r1", ROWS[i % 3][0], bad_truths.get(i, ROWS[i % 3][1]))
        for i in range(6)
    ), return_exceptions=True)
    for i in (0, 2, 5):
        assert outcomes[i]["score"] == pytest.approx(ROWS[i % 3][2])
    for i, field in ((1, "ground_truth.type"), (3, "ground_truth.text"), (4, "ground_truth.name")):
        assert isinstance(outcomes[i], BadRequestError), outcomes[i]
        assert outcomes[i].param == field and outcomes[i].status == 422, outcomes[i]
        assert f"field {field}" in str(outcomes[i])
    assert request_count(service_env.url, status="422") - refused == 1
    assert request_count(service_env.url, status="200") - scored == 1


async def test_slime_group_rm(service_env):
    samples = [
        SimpleNamespace(
            prompt=[{"role": "user", "content": "find reviews"}],
            response=response + "<|im_end|>",
            label=json.dumps(truth),
            metadata={},
        )
        for response, truth, _ in ROWS
    ]
    rewards = await slime.group_rm(SimpleNamespace(reward_key=None), samples)
    assert rewards == pytest.approx([r for _, _, r in ROWS])
    detailed = await slime.group_rm(SimpleNamespace(reward_key="reward"), samples)
    assert detailed[0]["reward"] == pytest.approx(1001.0) and detailed[0]["value"] == 1000
    assert detailed[3]["format_error"] and detailed[3]["reward"] == 0
    assert await slime.rm(SimpleNamespace(), samples[2]) == pytest.approx(0.8)
