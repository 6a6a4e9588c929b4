"""Chunking a batch, building request bodies and checking replies against requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client._errors import ResponseMismatchError
from client._types import RewardBatch, RewardResult, ScoreItem


@dataclass(frozen=True)
class Chunk:
    """Items ``[start, start + len(items))`` of the caller's list."""

    start: int
    items: list[ScoreItem]


def plan_chunks(items: Sequence[ScoreItem], chunk_size: int) -> list[Chunk]:
    """Consecutive slices of at most ``chunk_size`` items (order kept)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return [
        Chunk(start, list(items[start : start + chunk_size]))
        for start in range(0, len(items), chunk_size)
    ]


def request_body(
    chunk: Chunk,
    config: Mapping[str, Any] | None,
    self_certainty_source: str | None,
    profile: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [item.to_wire() for item in chunk.items]}
    if profile is not None:
        body["profile"] = profile
    if config:
        body["config"] = dict(config)
    if self_certainty_source is not None:
        body["self_certainty_source"] = self_certainty_source
    return body


def parse_chunk(chunk: Chunk, body: Any, url: str) -> tuple[list[RewardResult], dict[str, Any]]:
    """Typed results of one chunk, checked: the count, each ``index`` and each ``id`` must
    match what was sent; anything else raises :class:`ResponseMismatchError`."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ResponseMismatchError(
            f"{url} answered without a 'results' list; is this URL the reward service "
            "(POST /v1/rewards)?",
            url=url,
        )
    raw = body["results"]
    if len(raw) != len(chunk.items):
        raise ResponseMismatchError(
            f"{url} returned {len(raw)} results for {len(chunk.items)} items (items "
            f"{chunk.start}..{chunk.start + len(chunk.items) - 1}); refusing to align them. "
            "Check that every URL points at a compatible reward service version.",
            url=url,
        )
    results = []
    for position, (item, data) in enumerate(zip(chunk.items, raw, strict=True)):
        index = chunk.start + position
        if not isinstance(data, dict) or data.get("index", position) != position:
            got = data.get("index") if isinstance(data, dict) else data
            raise ResponseMismatchError(
                f"{url}: result {position} of a chunk carries index {got!r}, not {position} "
                f"(item {index}); the reply is out of order.",
                url=url,
            )
        if item.id is not None and data.get("id") != item.id:
            raise ResponseMismatchError(
                f"{url}: result for item {index} has id {data.get('id')!r}, expected "
                f"{item.id!r}; the reply does not belong to this request.",
                url=url,
            )
        try:
            results.append(RewardResult.from_wire(data, index))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponseMismatchError(
                f"{url}: result for item {index} is malformed ({type(exc).__name__}: {exc})",
                url=url,
            ) from None
    meta = {key: body.get(key) for key in ("config_hash", "model")}
    meta["seconds"] = float((body.get("timings") or {}).get("total_seconds", 0.0))
    meta["url"] = url
    return results, meta


def assemble(parts: list[tuple[list[RewardResult], dict[str, Any]]]) -> RewardBatch:
    """One batch from the chunks' results (already in order). Chunks scored by servers
    with different reward configurations are refused: their rewards are not comparable."""
    results = [result for chunk_results, _ in parts for result in chunk_results]
    hashes = {meta["config_hash"] for _, meta in parts}
    if len(hashes) > 1:
        urls = sorted({f"{meta['url']}={meta['config_hash']}" for _, meta in parts})
        raise ResponseMismatchError(
            f"the servers score with different reward configurations ({', '.join(urls)}); "
            "start every server with the same profile/config before training."
        )
    return RewardBatch(
        results=results,
        config_hash=next(iter(hashes)) if hashes else None,
        model=parts[0][1]["model"] if parts else None,
        server_seconds=sum(meta["seconds"] for _, meta in parts),
        urls=[meta["url"] for _, meta in parts],
    )
