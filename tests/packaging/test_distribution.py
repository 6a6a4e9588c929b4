"""The distributions: the wheel and sdist build and pass ``twine check``, and the base wheel
installed into a fresh virtual environment gives a working client and every trainer
adapter against a running service, with no torch, web framework or transformers in it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "starlette", "prometheus_client",
         "vllm", "numpy")
TERMINATE = json.dumps({"type": "terminate"})
ANSWER = json.dumps({"rationale": "I have seen enough, so I leave.",
                     "action": {"type": "terminate"}})


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # The project's own build requirements are in this environment (dev extra): no
    # isolated build environment to download.
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    return out


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    built = sorted(path.name for path in dist.iterdir())
    assert len(built) == 2 and built[0].endswith(".whl") and built[1].endswith(".tar.gz")
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                             *map(str, dist.iterdir())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_requirements_are_light(dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith("/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    base = [line for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line]
    names = {line.split(":", 1)[1].strip().split()[0].split("<")[0].split(">")[0].split("=")[0]
             for line in base}
    assert names <= {"httpx", "pydantic-settings"}, base
    extras = {line.split(":", 1)[1].strip() for line in lines if line.startswith("Provides-Extra")}
    assert {"server", "model", "vllm", "dev"} <= extras
    torch = [line for line in lines if line.startswith("Requires-Dist: torch")]
    assert torch and all("==" not in line.split(";")[0] for line in torch)  # no exact pin


USE_EVERYTHING = textwrap.dedent('''
    import asyncio, importlib.util, json, sys, types
    url = sys.argv[1]
    heavy = [name for name in json.loads(sys.argv[2]) if importlib.util.find_spec(name)]
    assert not heavy, f"installed in the base environment: {heavy}"
    from client import AsyncRewardClient, RewardClient
    answer, label = sys.argv[3], sys.argv[4]
    item = {"completion": answer, "ground_truth": json.loads(label)}
    with RewardClient(url) as client:
        assert client.score([item]).rewards == [0.8]
    async def use_async():
        async with AsyncRewardClient(url) as client:
            return (await client.score([item])).rewards
    assert asyncio.run(use_async()) == [0.8]

    from trainer_adapter import openrlhf, slime, trl, verl, certainty
    out = openrlhf.reward_func(["P" + answer], ["P"], [label])
    assert list(out["rewards"]) == [0.8], out
    assert verl.compute_score_batch(["shop"], [answer], [json.loads(label)])[0]["score"] == 0.8
    assert asyncio.run(verl.compute_score("shop", answer, json.loads(label)))["score"] == 0.8
    assert asyncio.run(trl.shop_r1_reward(prompts=["P"], completions=[answer],
                                          ground_truth=[label])) == [0.8]
    sample = types.SimpleNamespace(prompt="P", response=answer, label=label, metadata={})
    args = types.SimpleNamespace(reward_key=None)
    assert asyncio.run(slime.group_rm(args, [sample])) == [0.8]
    assert certainty.rationale_char_span(answer) is not None
    print("ok")
''')


def test_base_wheel_serves_client_and_adapters_without_heavy_packages(
    dist: Path, rules_server, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    install = subprocess.run([str(python), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    script = tmp_path / "use_everything.py"
    script.write_text(USE_EVERYTHING)
    env = {"SHOP_R1_REWARD_URL": rules_server.url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(python), str(script), rules_server.url, json.dumps(HEAVY), ANSWER, TERMINATE],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
