"""Bad input to ``shop-r1-reward ray-serve``: each is refused before anything is
deployed, with exit status 2 and a message naming the cause and the fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _ray_serve(*args: str, block_ray: bool = False) -> subprocess.CompletedProcess:
    code = "import sys\n"
    if block_ray:
        # Stages an environment without Ray: importing it fails as it would there.
        code += "sys.modules['ray'] = None\n"
    code += "from reward_server.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, "ray-serve", *args],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )


def test_ray_not_installed_names_the_extra() -> None:
    result = _ray_serve("--model", "none", block_ray=True)
    assert result.returncode == 2
    assert "Ray Serve is not installed" in result.stderr
    assert "pip install 'shop-r1-reward[ray]'" in result.stderr


def test_unreachable_ray_address_is_refused_before_connecting() -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]'")
    port = free_port()  # bound and released: nothing listens there
    result = _ray_serve("--model", "none", "--ray-address", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stderr
    assert "ray start --head" in result.stderr and "--ray-address" in result.stderr


def test_malformed_ray_address_is_named() -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]'")
    result = _ray_serve("--model", "none", "--ray-address", "head:notaport")
    assert result.returncode == 2
    assert "--ray-address 'head:notaport' is not an address" in result.stderr


def test_bad_cluster_setting_names_its_flag() -> None:
    result = _ray_serve("--model", "none", "--ingress-min-replicas", "3",
                        "--ingress-max-replicas", "2")
    assert result.returncode == 2
    assert "ingress_max_replicas must be >= ingress_min_replicas" in result.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_gpus_requested_where_the_cluster_has_none(ray_cluster) -> None:
    from ray import serve

    result = _ray_serve("--model", "embedded", "--ray-address", ray_cluster.address,
                        "--app-name", "gpu-app", "--model-num-gpus", "1")
    assert result.returncode == 2, result.stderr
    assert "needs 1 GPU(s), but the Ray cluster at" in result.stderr
    assert "has 0" in result.stderr and "--model-num-gpus 0" in result.stderr
    assert "gpu-app" not in serve.status().applications


@pytest.mark.slow
@pytest.mark.ray
def test_custom_resource_the_cluster_lacks(ray_cluster) -> None:
    from ray import serve

    result = _ray_serve("--model", "embedded", "--ray-address", ray_cluster.address,
                        "--app-name", "pinned-app", "--model-resources", '{"tpu_pod": 1}')
    assert result.returncode == 2, result.stderr
    assert "--model-resources asks 1 of 'tpu_pod'" in result.stderr
    assert "pinned-app" not in serve.status().applications
