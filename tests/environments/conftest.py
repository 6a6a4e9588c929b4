"""Shared set-up for the tests that run the RL environment frameworks' own code.

Each framework lives in an environment of its own (``scripts/install-environments``:
``.venv-verifiers``, ``.venv-openenv``, ``.venv-nemo-gym``). A test builds its items here
from the task (``shop_task``), runs a driver script from ``drivers/`` with that
environment's Python, and compares every reward with ``shop-r1-reward score`` (the CLI)
on the same items.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shop_task import build_task
from tests.conftest import REPO
from tests.trainers import shopping
from tests.trainers.conftest import smollm2_tokenizer, tokenizer_dir  # noqa: F401 (fixtures)

DRIVERS = Path(__file__).resolve().parent / "drivers"
VENVS = {
    "verifiers": Path(os.environ.get("SHOP_R1_VERIFIERS_VENV", REPO / ".venv-verifiers")),
    "openenv": Path(os.environ.get("SHOP_R1_OPENENV_VENV", REPO / ".venv-openenv")),
    "nemo_gym": Path(os.environ.get("SHOP_R1_NEMO_GYM_VENV", REPO / ".venv-nemo-gym")),
}
STAMP = ".shop-r1-environment"
# The checks run over this many real task steps.
STEPS = 200


def venv_bin(framework: str, program: str = "python") -> Path:
    """A program of the framework's environment, or skip (saying how to install it)."""
    venv = VENVS[framework]
    if not (venv / STAMP).exists():
        pytest.skip(f"the {framework} environment ({venv.name}) is absent: "
                    "run scripts/install-environments")
    return venv / "bin" / program


def run_driver(
    framework: str, script: str, spec: dict[str, Any], tmp_path: Path, timeout: float = 300
) -> dict[str, Any]:
    """Run ``drivers/<script>`` with the framework's Python: a JSON spec in, a JSON result
    out; a failing driver fails the test with its output."""
    python = venv_bin(framework)
    spec_path, out_path = tmp_path / f"{script}.spec.json", tmp_path / f"{script}.out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run(
        [str(python), str(DRIVERS / script), str(spec_path), str(out_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(DRIVERS)},
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
    return json.loads(out_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def task():
    """The task as every environment builds it by default."""
    return build_task()


def answer(row, k: int) -> str:
    """The policy's fixed answer to ``row``: right, partly right, wrong and malformed in
    turn (``k`` picks which)."""
    return shopping.answers(row.ground_truth_json, k % 6 + 1)[-1]


def cli_items(rows, completions, self_certainties=None) -> list[dict[str, Any]]:
    """The CLI's input lines for the same items."""
    items = []
    for index, (row, completion) in enumerate(zip(rows, completions, strict=True)):
        item = {"id": row.id, "completion": completion, "ground_truth": row.ground_truth}
        if self_certainties is not None and self_certainties[index] is not None:
            item["self_certainty"] = self_certainties[index]
        items.append(item)
    return items


def assert_same_as_cli(results: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Every result's reward, score, components and format-failure reason equal the CLI's
    exactly, item by item (``results``: dicts with those keys, in the CLI's order)."""
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        assert got["id"] == want["id"]
        assert got["reward"] == want["reward"], (got, want)
        assert got["score"] == want["score"], (got, want)
        assert got["components"] == want["components"], (got, want)
        reason = want["format_error"]["reason"] if want["format_error"] else None
        assert got["format_error_reason"] == reason, (got, want)
