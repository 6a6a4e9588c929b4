"""Served under a prefix (``root_path``), the probes stay public and the rest keeps
asking for the key: Starlette routes on the path below the prefix, and so does auth."""

from __future__ import annotations

import httpx

from reward_server.api.app import create_app
from reward_server.config import ServerSettings


async def test_probes_are_public_below_a_root_path() -> None:
    app = create_app(ServerSettings(model="none", api_key="k"))
    transport = httpx.ASGITransport(app=app, root_path="/reward")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/reward/healthz")).status_code == 200
        assert (await client.get("/reward/v1/config")).status_code == 401
        authed = await client.get("/reward/v1/config", headers={"Authorization": "Bearer k"})
        assert authed.status_code == 200
