"""Request bodies decoded and validated off the event loop when they are large.

FastAPI decodes a JSON body (``json.loads``) and validates it on the event loop. At the
body limit that is hundreds of milliseconds (64 MB of long completions) to seconds
(10 MB of token ids), during which no other connection, probe or scrape is served. Here a
body over ``INLINE_BODY_BYTES`` is decoded and validated in a worker thread; a smaller one
inline, where a thread hop would cost more than it saves. The decoder is the standard
library's, as FastAPI's: it accepts a lone surrogate escape (``"\\ud800"``), which a
policy can emit and a Python client sends as such, where pydantic-core's parser refuses
the whole body. Errors keep FastAPI's shape (``RequestValidationError``), so they map to
the same 422/413 answers.

The OpenAPI document still shows each route's body model: :func:`body_openapi` declares
it, and :func:`add_body_schemas` adds the models to the document's components.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

INLINE_BODY_BYTES = 256 * 1024
_COMPONENTS = "#/components/schemas/{model}"

Model = TypeVar("Model", bound=BaseModel)


async def validated_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON body as ``model`` (raises ``RequestValidationError``)."""
    body = await request.body()
    if len(body) > INLINE_BODY_BYTES:
        return await asyncio.to_thread(_decode_and_validate, model, body)
    return _decode_and_validate(model, body)


def _decode_and_validate(model: type[Model], body: bytes) -> Model:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {exc}"[:300],
            "input": None,
        }]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose body is ``model`` (read by validated_body)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "$ref": _COMPONENTS.format(model=model.__name__)
            }}},
        }
    }


def add_body_schemas(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Make ``app.openapi()`` include ``models`` (and the models they use) in its
    components, where :func:`body_openapi` points."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _, schemas = models_json_schema(
            [(model, "validation") for model in models], ref_template=_COMPONENTS
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in schemas.get("$defs", {}).items():
            components.setdefault(name, schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
