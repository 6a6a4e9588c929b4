"""Auth and state-changing endpoints: missing / wrong / prefix-of-correct
keys refused everywhere but the probes; the comparison is constant-time; /v1/reload only
with the key and only for directories under --reload-root."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import httpx
import pytest

from reward_server.api import middleware
from reward_server.api.middleware import BearerAuthMiddleware
from tests.reliability.conftest import FaultState

KEY = "k3y-0123456789abcdef-0123456789abcdef"
WRONG_KEYS = {
    "missing": None,
    "empty bearer": "Bearer",
    "wrong": "Bearer wrong",
    "prefix of correct": f"Bearer {KEY[:-1]}",
    "short prefix": f"Bearer {KEY[:4]}",
    "correct plus a byte": f"Bearer {KEY}x",
    "case changed": f"Bearer {KEY.upper()}",
    "no scheme": KEY,
    "basic scheme": f"Basic {KEY}",
    "two keys": f"Bearer {KEY} {KEY}",
}
PUBLIC = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    from tests.conftest import launch_server

    server = launch_server(tmp_path_factory.mktemp("keyed"), api_key=KEY)
    yield server
    server.stop()


def _routes(server) -> list[tuple[str, str]]:
    schema = httpx.get(server.url + "/openapi.json", headers=server.headers).json()
    routes = [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops
              if path not in PUBLIC]
    return [*routes, ("GET", "/openapi.json"), ("GET", "/docs")]


def test_every_non_public_route_refuses_bad_keys(keyed_server) -> None:
    routes = _routes(keyed_server)
    assert ("POST", "/v1/reload") in routes and ("GET", "/v1/config") in routes
    for method, path in routes:
        for label, header in WRONG_KEYS.items():
            headers = {"Authorization": header} if header is not None else {}
            response = httpx.request(method, keyed_server.url + path, headers=headers,
                                     json={"items": []} if method == "POST" else None)
            assert response.status_code == 401, (method, path, label, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
    for path in PUBLIC:
        assert httpx.get(keyed_server.url + path).status_code == 200
    good = httpx.post(keyed_server.url + "/v1/rewards", headers=keyed_server.headers,
                      json={"items": []})
    assert good.status_code == 200


def test_comparison_is_over_digests_with_compare_digest(monkeypatch) -> None:
    """Code level: both sides are SHA-256 digests (fixed length, whatever the presented
    key), compared with hmac.compare_digest, and the raw key is never compared."""
    source = inspect.getsource(BearerAuthMiddleware)
    assert "hmac.compare_digest(_digest(presented), self.expected)" in source
    for raw in ("presented ==", "== presented", "token ==", "== token", "== self.expected",
                "self.expected =="):
        assert raw not in source
    calls: list[tuple[bytes, bytes]] = []
    real = middleware.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    app = BearerAuthMiddleware(_ok_app, api_key=KEY, public_paths=PUBLIC)
    for header in (f"Bearer {KEY[:-1]}", "Bearer x", f"Bearer {KEY}", f"Bearer {'y' * 5000}"):
        asyncio.run(_call(app, header))
    assert len(calls) == 4
    assert all(len(a) == len(b) == 32 for a, b in calls)
    assert all(b == hashlib.sha256(KEY.encode()).digest() for _, b in calls)


async def _ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _call(app, header: str) -> int:
    scope = {"type": "http", "path": "/v1/rewards", "method": "POST",
             "headers": [(b"authorization", header.encode())]}
    status = 0

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


# ----------------------------------------------------------------- reload root
@pytest.fixture
def reload_server(fault_server, tmp_path):
    root = tmp_path / "models"
    (root / "good").mkdir(parents=True)
    (root / "good" / "config.json").write_text("{}")
    (root / "file.bin").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "escape_etc").symlink_to("/etc")
    state = FaultState()
    server = fault_server(state, api_key=KEY, reload_root=str(root))
    server.headers = {"Authorization": f"Bearer {KEY}"}
    return server, root, state


def test_reload_needs_the_key(reload_server) -> None:
    server, root, state = reload_server
    for label, header in WRONG_KEYS.items():
        headers = {"Authorization": header} if header is not None else {}
        response = httpx.post(server.url + "/v1/reload", headers=headers,
                              json={"model_dir": str(root / "good")})
        assert response.status_code == 401, label
    assert state.loads == ["faulty"]  # nothing was (re)loaded
    ok = httpx.post(server.url + "/v1/reload", headers=server.headers,
                    json={"model_dir": str(root / "good")})
    assert ok.status_code == 200, ok.text
    assert state.loads == ["faulty", str((root / "good").resolve())]


OUTSIDE_ATTEMPTS = [
    "../../etc", "../outside", "{root}/../outside", "{root}/../../../etc", "/etc", "/",
    "{root}/escape", "{root}/escape_etc", "escape", "{root}/good/../../outside",
]
NOT_A_DIR = ["{root}/missing", "{root}/file.bin", ""]


def _reload(server, model_dir: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/reload", headers=server.headers,
                      json={"model_dir": model_dir})


def test_reload_refuses_paths_outside_the_root(reload_server, monkeypatch) -> None:
    """Traversal (``..``), absolute paths and symlinks out of the root are refused and
    nothing is loaded. (The status, 422, is checked in the test below.)"""
    server, root, state = reload_server
    monkeypatch.chdir(root)  # relative paths resolve from the server's working directory
    for template in OUTSIDE_ATTEMPTS + NOT_A_DIR:
        response = _reload(server, template.format(root=root))
        assert response.status_code in (422, 500), (template, response.text)
        assert response.json()["error"]["code"] == response.status_code
    assert state.loads == ["faulty"], state.loads  # nothing outside the root was loaded
    inside = _reload(server, str(root / "good" / ".." / "good"))
    assert inside.status_code == 200, inside.text
    assert state.loads[-1] == str((root / "good").resolve())


def test_refused_reload_is_422_naming_model_dir(reload_server, monkeypatch) -> None:
    server, root, _ = reload_server
    monkeypatch.chdir(root)
    for template in OUTSIDE_ATTEMPTS + NOT_A_DIR:
        response = _reload(server, template.format(root=root))
        assert response.status_code == 422, (template, response.text)
        assert response.json()["error"]["param"] == "model_dir"


def test_reload_is_off_without_a_reload_root(fault_server) -> None:
    server = fault_server(FaultState(), api_key=KEY)
    response = httpx.post(server.url + "/v1/reload", json={"model_dir": "/tmp"},
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 403, response.text
