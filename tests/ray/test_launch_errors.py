"""Bad input to ``shop-r1-reward ray-serve``: each is refused before anything is
deployed, with exit status 2 and a message naming the cause and the fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _ray_serve(
    *args: str, block_ray: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    code = "import sys\n"
    if block_ray:
        # Stages an environment without Ray: importing it fails as it would there.
        code += "sys.modules['ray'] = None\n"
    code += "from reward_server.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, "ray-serve", *args],
        cwd=REPO, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=120,
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
@pytest.mark.parametrize(("flags", "messages"), [
    (("--model-num-gpus", "1"),
     ("needs 1 GPU(s), but the Ray cluster at", "has 0", "--model-num-gpus 0")),
    (("--model-resources", '{"tpu_pod": 1}'),
     ("--model-resources asks 1 of 'tpu_pod'", "ray start --resources")),
])
def test_resources_the_cluster_lacks_are_refused(ray_cluster, flags, messages) -> None:
    """GPUs (or a custom resource) per model replica that the cluster does not have: the
    command names the cause and the fix, and deploys nothing."""
    from ray import serve

    result = _ray_serve("--model", "embedded", "--ray-address", ray_cluster.address,
                        "--app-name", "unplaceable", *flags)
    assert result.returncode == 2, result.stderr
    for message in messages:
        assert message in result.stderr
    assert "unplaceable" not in serve.status().applications


def test_bad_setting_from_the_environment_names_its_variable() -> None:
    result = _ray_serve("--model", "none", env={"SHOP_R1_MODEL_RESOURCES": "{oops"})
    assert result.returncode == 2
    assert "SHOP_R1_MODEL_RESOURCES: not a JSON object" in result.stderr
    result = _ray_serve("--model", "none", "--model-resources", "{oops")
    assert result.returncode == 2
    assert "--model-resources: not a JSON object" in result.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_a_deployment_that_fails_on_a_joined_cluster_is_removed(ray_cluster, tmp_path) -> None:
    """A model that cannot load: the command fails naming the cause, and the application
    it deployed is not left behind on the cluster it joined (the cluster stays up)."""
    from ray import serve

    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    result = _ray_serve("--model", str(broken), "--ray-address", ray_cluster.address,
                        "--port", str(ray_cluster.http_port), "--app-name", "cannot-load")
    assert result.returncode == 2, result.stderr
    assert "CertaintyModel: ModelLoadError: cannot load model from" in result.stderr
    assert "cannot-load" not in serve.status().applications
