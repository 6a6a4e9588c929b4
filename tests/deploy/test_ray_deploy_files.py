"""The Ray deploy files are what their consumers accept: the RayService's Serve config
validates against Ray's own schema and builds the application from its arguments, and
the Prometheus configuration passes promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

RAYSERVICE = REPO / "deploy" / "kuberay" / "rayservice.yaml"
PROMETHEUS = REPO / "deploy" / "ray" / "prometheus.yml"


def _serve_config() -> dict:
    service = yaml.safe_load(RAYSERVICE.read_text())
    assert service["kind"] == "RayService"
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def test_rayservice_matches_the_pinned_ray_and_builds_the_application(monkeypatch) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]'")
    import importlib.metadata

    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from reward_server.ray_serve.settings import RAY_SERIES

    service = yaml.safe_load(RAYSERVICE.read_text())
    assert service["spec"]["rayClusterConfig"]["rayVersion"].startswith(RAY_SERIES + ".")
    assert importlib.metadata.version("ray").startswith(RAY_SERIES + ".")
    config = ServeDeploySchema.model_validate(_serve_config())
    (app,) = config.applications
    module, _, name = app.import_path.partition(":")
    builder = getattr(__import__(module, fromlist=[name]), name)
    # The API key comes from the pods' Secret; without it the builder must refuse.
    monkeypatch.delenv("SHOP_R1_API_KEY", raising=False)
    with pytest.raises(ValueError, match="API key"):
        builder(dict(app.args))
    monkeypatch.setenv("SHOP_R1_API_KEY", "from-the-secret")
    assert isinstance(builder(dict(app.args)), Application)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (with prometheus: scripts/install --system-packages) missing")
def test_prometheus_configuration_passes_promtool() -> None:
    result = subprocess.run(["promtool", "check", "config", str(PROMETHEUS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
