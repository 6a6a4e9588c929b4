"""OpenRLHF 0.11.2's own reward path against the real service with self-certainty on.

The trainer's code runs in the trainers' environment (``scripts/install-trainers``):
``SingleTurnAgentExecutor`` posts one request per sample (URL mode) or calls
``examples/openrlhf/reward_func.py`` (``.py`` mode), and its experience code concatenates,
splits and rebuilds the samples' logs. Only vLLM (generation), DeepSpeed and flash-attn
are stand-ins. URL mode: 10 prompts x 20 samples, 200 requests in flight at once, a mix
of valid answers and format failures, every fifth prompt too long and cut from the left.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, launch_server
from tests.trainers import documented, shopping
from tests.trainers.conftest import cli_scores, run_driver, run_json_driver

pytestmark = pytest.mark.slow

RELEASE = "openrlhf-0.11.2"
MAX_LEN, MAX_NEW_TOKENS = 416, 96  # prompts over 320 tokens are cut from the left
LOG_KEYS = {
    "format", "type", "attribute", "value", "format_ok",
    "self_certainty", "self_certainty_missing", "self_certainty_approximate",
}


def rollout_spec(
    tokenizer, tokenizer_dir: Path, remote_url: list[str], rows: int, samples: int
) -> dict:
    data = shopping.rows(rows, long_every=5)
    return {
        "tokenizer_dir": str(tokenizer_dir),
        "remote_url": remote_url,
        "max_len": MAX_LEN,
        "max_new_tokens": MAX_NEW_TOKENS,
        "micro_batch_size": 16,
        "rows": [
            {
                # --data.apply_chat_template: the templated prompt text OpenRLHF sends
                "prompt": tokenizer.apply_chat_template(
                    row["prompt"], tokenize=False, add_generation_prompt=True
                ),
                "label": row["ground_truth"],  # --data.label_key ground_truth
                "answers": shopping.answers(row["ground_truth"], samples),
            }
            for row in data
        ],
    }


def float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def check_rollout(
    out: dict, spec: dict, tokenizer, tmp_path: Path, reply_float32: bool = False
) -> None:
    """``reply_float32``: the reward function's reply holds float32 tensors (``.py`` mode);
    URL mode keeps the JSON numbers until the experience is built."""
    as_sent = float32 if reply_float32 else float
    samples = out["samples"]
    per_row = len(spec["rows"][0]["answers"])
    count = len(spec["rows"]) * per_row
    assert len(samples) == count and out["requests_to_engine"] == count
    # Every sample has its reward, and the same log keys whatever its answer was.
    assert all(s["reward"] is not None for s in samples), [s for s in samples if not s["reward"]]
    assert all(set(s["extra_logs"]) == LOG_KEYS for s in samples)
    assert len({tuple(s["info_keys"]) for s in samples}) == 1
    # Concatenated into micro-batches, split and rebuilt: every key has every sample.
    assert out["batch_size"] == count
    assert all(len(values) == count for values in out["batched_info"].values())
    assert set(out["batched_info"]) >= LOG_KEYS

    # Each reward is what the CLI gives the same completion and ground truth (with the
    # service's self-certainty value where it has one).
    def logged(sample: dict, key: str) -> float:
        return float(sample["extra_logs"][key][0])

    items = []
    for sample in samples:
        item = {"completion": sample["response_text"], "ground_truth": sample["label"]}
        if logged(sample, "self_certainty_missing") == 0:
            item["self_certainty"] = logged(sample, "self_certainty")
        items.append(item)
    expected = cli_scores(items, tmp_path)
    for sample, cli in zip(samples, expected, strict=True):
        assert float(sample["reward"][0]) == as_sent(cli["reward"])
        assert float(sample["scores"][0]) == as_sent(cli["score"])
        assert sample["experience_reward"] == [float32(cli["reward"])]
        assert logged(sample, "format_ok") == float(cli["format_ok"])
        assert logged(sample, "self_certainty_missing") == float(not cli["format_ok"])

    # A prompt cut from the left still gets its response's reward; its self-certainty is
    # flagged approximate, and only its.
    full_length = {
        row["prompt"]: len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        for row in spec["rows"]
    }
    cut = [s for s in samples if s["prompt_tokens_kept"] < full_length[s["prompt"]]]
    assert len(cut) == per_row * math.ceil(len(spec["rows"]) / 5)
    for sample in samples:
        has_value = logged(sample, "self_certainty_missing") == 0
        approximate = logged(sample, "self_certainty_approximate")
        assert approximate == float(has_value and sample in cut), sample["prompt"][-40:]
    assert any(logged(s, "self_certainty_approximate") for s in cut)
    assert sum(s["reward"][0] > 1000 for s in cut) >= len(cut) // 6  # DARS-scale rewards kept


def test_url_mode_200_concurrent_samples(model_server, smollm2_tokenizer, tokenizer_dir, tmp_path):
    url = model_server.url + "/get_reward"
    spec = rollout_spec(smollm2_tokenizer, tokenizer_dir, [url], rows=10, samples=20)
    out = run_json_driver(RELEASE, "openrlhf_rollout.py", spec, tmp_path)
    check_rollout(out, spec, smollm2_tokenizer, tmp_path)


def test_py_mode_reward_func(model_server, smollm2_tokenizer, tokenizer_dir, tmp_path):
    reward_file = str(REPO / "examples" / "openrlhf" / "reward_func.py")
    spec = rollout_spec(smollm2_tokenizer, tokenizer_dir, [reward_file], rows=3, samples=6)
    out = run_json_driver(
        RELEASE, "openrlhf_rollout.py", spec, tmp_path,
        env={"SHOP_R1_REWARD_URL": model_server.url},
    )
    check_rollout(out, spec, smollm2_tokenizer, tmp_path, reply_float32=True)


def test_calls_while_the_model_loads_all_get_rewards(smollm2_tokenizer, tokenizer_dir, tmp_path):
    """OpenRLHF retries 5 times a second apart: the service must not answer 503 while its
    model loads. A fresh cache makes the load de-quantise the model (seconds)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = rollout_spec(smollm2_tokenizer, tokenizer_dir, [url + "/get_reward"], rows=2, samples=8)
    spec["service"] = url
    started: dict = {}
    short: dict = {}

    def start_server() -> None:
        started["server"] = launch_server(
            tmp_path, model="embedded", port=port, cache_dir=str(tmp_path / "cold-cache"),
        )

    def short_deadline() -> None:
        """A request whose own deadline ends before the model is ready: 503, retry later."""
        body = {"query": [spec["rows"][0]["prompt"] + "{}"],
                "prompts": [spec["rows"][0]["prompt"]], "labels": [spec["rows"][0]["label"]]}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        short["ready_before"] = httpx.get(url + "/readyz", timeout=5).status_code
        short["reply"] = httpx.post(url + "/get_reward", json=body, timeout=30,
                                    headers={"X-Request-Timeout": "0.2"})

    threads = [threading.Thread(target=start_server), threading.Thread(target=short_deadline)]
    for thread in threads:
        thread.start()
    try:
        out = run_json_driver(RELEASE, "openrlhf_rollout.py", spec, tmp_path)
    finally:
        for thread in threads:
            thread.join(300)
        if "server" in started:
            started["server"].stop()
    assert out["readyz_before"] == 503  # the trainer started before the model was ready
    assert all(s["reward"] is not None for s in out["samples"])
    assert len(out["samples"]) == 16
    assert short["ready_before"] == 503  # the de-quantisation takes seconds
    reply = short["reply"]
    assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1
    assert "still loading" in reply.json()["error"]["message"]


def parse(args: list[str], tmp_path: Path) -> dict:
    out_path = tmp_path / "parsed.json"
    run_driver(RELEASE, "openrlhf_args.py", str(out_path), "--", *args)
    return json.loads(out_path.read_text(encoding="utf-8"))


def test_documented_commands_pass_openrlhf_own_parser(tmp_path):
    for label, remote_url in [
        ("OpenRLHF 0.11: URL mode",
         ["http://rm-0:8000/get_reward", "http://rm-1:8000/get_reward"]),
        ("OpenRLHF 0.11: .py mode", [str(REPO / "examples" / "openrlhf" / "reward_func.py")]),
    ]:
        words = documented.command("openrlhf/README.md", label)
        args = documented.after_program(words, "openrlhf.cli.train_ppo_ray")
        parsed = parse(documented.localised(args, documented.placeholders(tmp_path)), tmp_path)
        assert parsed.get("remote_url") == remote_url, parsed
        assert parsed["label_key"] == "ground_truth" and parsed["input_key"] == "prompt"
        assert parsed["apply_chat_template"] is True
        assert parsed["estimator"] == "group_norm" and parsed["n_samples_per_prompt"] == 8
        assert parsed["clip_range"] == [-10, 10]  # the default the page warns about

    # The flat names of OpenRLHF 0.10 are rejected by 0.11.
    old = ["--pretrain", "Qwen/Qwen2.5-3B-Instruct", "--prompt_data", "rows.jsonl",
           "--apply_chat_template", "--advantage_estimator", "group_norm",
           "--n_samples_per_prompt", "8", "--temperature", "0.6", "--init_kl_coef", "0.001"]
    rejected = parse(old, tmp_path)
    assert rejected["exit"] == 2 and "unrecognized arguments" in rejected["stderr"]
    for flag in ("--pretrain", "--prompt_data", "--init_kl_coef"):
        assert flag in rejected["stderr"]
