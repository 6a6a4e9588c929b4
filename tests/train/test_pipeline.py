"""The whole Shop-R1 pipeline at tiny scale, each stage through its own command: the task,
2 SFT steps, 2 GRPO steps against a real reward service, evaluation of 8 rows; and the
table command that chains them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, metric_total

pytestmark = pytest.mark.slow


def train(*args: str, cwd: Path) -> str:
    """``shop-r1-train ARGS`` in a child process (GRPO configures its adapter through
    the environment, which must not leak into this one)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "shop_train.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def test_each_stage_runs_on_its_own_command(tiny_policy, start_server, tmp_path):
    rows = tmp_path / "rows"
    train("task", str(rows), "--history", "latest", cwd=tmp_path)
    first = json.loads((rows / "trl" / "train.jsonl").read_text().splitlines()[0])
    assert first["prompt"][0]["role"] == "system" and "ground_truth" in first

    sft = tmp_path / "sft"
    train("sft", "--model", str(tiny_policy), "--out", str(sft), "--rows", "16",
          "--batch-size", "8", "--device", "cpu", cwd=tmp_path)
    sft_summary = json.loads((sft / "summary.json").read_text())
    assert sft_summary["rows"] == 16 and sft_summary["final_loss"] is not None
    assert len([e for e in json.loads((sft / "training_log.json").read_text()) if "loss" in e]) == 2

    server = start_server(model="none")
    grpo = tmp_path / "grpo"
    train("grpo", "--model", str(sft), "--out", str(grpo), "--reward-url", server.url,
          "--grpo-steps", "2", "--prompts-per-step", "1", "--group-size", "2",
          "--max-completion-length", "16", "--rows", "4", "--device", "cpu", cwd=tmp_path)
    steps = json.loads((grpo / "summary.json").read_text())["steps"]
    assert [s["step"] for s in steps] == [1, 2]
    for key in ("reward", "format", "type", "value", "format_failure", "terminate_share"):
        assert all(key in s for s in steps), key
    scraped = httpx.get(server.url + "/metrics").text
    # 2 steps x 1 prompt x 2 completions, scored by the service
    assert metric_total(scraped, "reward_request_items_sum", route="/v1/rewards") == 4

    report = tmp_path / "eval.json"
    out = train("eval", "--model", str(grpo), "--out", str(report), "--rows", "8",
                "--max-new-tokens", "8", "--device", "cpu", cwd=tmp_path)
    evaluated = json.loads(report.read_text())
    assert evaluated["rows"] == len(evaluated["answers"]) == 8
    assert json.loads(out)["count"] == 8
    for key in ("exact_accuracy", "type_macro_f1", "format_failure_rate", "terminate_share"):
        assert key in evaluated["metrics"]


def test_the_table_command_writes_the_table_and_the_plots(tiny_policy, tmp_path):
    out = tmp_path / "table"
    train("table", "--out", str(out), "--model", str(tiny_policy), "--budget", "tiny",
          "--device", "cpu", cwd=tmp_path)
    results = json.loads((out / "results.json").read_text())
    labels = [row["label"] for row in results["rows"]]
    assert labels == ["zero-shot", "SFT", "SFT + GRPO (binary)", "SFT + GRPO (Shop-R1)"]
    assert all(row["eval_rows"] == 8 for row in results["rows"])
    table = (out / "results.md").read_text()
    for label in labels:
        assert f"| {label} |" in table
    assert (out / "plots" / "grpo_curves.png").read_bytes()[:4] == b"\x89PNG"
    plots = {Path(p).name for p in results["plots"]}
    assert plots >= {"grpo_reward.png", "grpo_terminate_share.png"}
    profiles = {json.loads((out / f"grpo-{p}" / "summary.json").read_text())["settings"]["profile"]
                for p in ("binary", "paper")}
    assert profiles == {"binary", "paper"}
