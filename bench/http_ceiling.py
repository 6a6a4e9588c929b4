"""The framework's own ceiling for bench_http: a bare FastAPI endpoint that parses the same
request body into models of the same shape and answers constant rewards in the same
response shape. Run by bench_http.py with the same uvicorn settings as the service."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    id: str | int | None = None
    completion: str
    ground_truth: dict[str, Any] | str
    prompt: str | None = None


class Body(BaseModel):
    items: list[Item]


class Components(BaseModel):
    format: float = 0.5
    type: float = 0.3
    attribute: float = 0.2
    value: float = 0.0
    self_certainty: float | None = None


class Result(BaseModel):
    index: int
    id: str | int | None
    reward: float = 1.0
    score: float = 0.001
    components: Components = Components()
    format_ok: bool = True


class Reply(BaseModel):
    results: list[Result]
    config_hash: str = "0" * 16


@app.post("/v1/rewards")
async def constant_rewards(body: Body) -> Response:
    reply = Reply(results=[Result(index=i, id=item.id) for i, item in enumerate(body.items)])
    return Response(reply.model_dump_json(), media_type="application/json")
