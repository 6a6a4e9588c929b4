"""One reward request in, one response out: rules, self-certainty, composition.

The service owns no transport: the API layer validates the body into a
:class:`~reward_server.protocol.RewardRequest` and maps the exceptions raised here to HTTP
statuses. Items keep their order and count end to end; a component that could not be
computed is ``null`` with a reason, never a silent 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, TypeVar

from reward_contract import CertaintySource
from reward_contract.certainty import APPROXIMATE_DETAILS, approximate_reason
from reward_server.certainty.types import CertaintyRequest, CertaintyResult, ScorerError
from reward_server.config import RewardConfig, load_config
from reward_server.protocol import (
    ConfigOverrides,
    EvaluateItem,
    EvaluateRequest,
    RewardItem,
    RewardRequest,
    overrides_dict,
)
from reward_server.results import (
    FORMAT_FAILURE_CERTAINTY,
    NO_CERTAINTY,
    Certainty,
    ItemResult,
    ScoredBatch,
    provided_certainty,
)
from reward_server.rewards import (
    Action,
    FormatFailure,
    ParsedFields,
    compose_batch,
    evaluate,
    parse_completion,
    parse_fields,
)
from reward_server.rewards.metrics import EvalMetrics

if TYPE_CHECKING:
    from reward_server.certainty.scorer_protocol import Scorer

log = logging.getLogger(__name__)

# Rules for a batch this large (items, or characters of completion text) run in a worker
# thread, so that one big request cannot stall the event loop and with it every other
# connection, the probes and /metrics. Below both bounds they take a few milliseconds at
# most, less than validating the same body (also on the loop), and the thread hop is not
# free: under load its GIL hand-offs cost 256-item batches about 30% of their throughput
# (bench_http, batch_256: 0.55-0.57 of the ceiling offloaded at 128 items, 0.77-0.81 inline).
RULES_OFFLOAD_ITEMS = 1024
RULES_OFFLOAD_CHARS = 256 * 1024
_Result = TypeVar("_Result")


def rules_are_heavy(items: Sequence[RewardItem | EvaluateItem]) -> bool:
    """Whether the rules of ``items`` belong off the event loop (see the bounds above)."""
    if len(items) >= RULES_OFFLOAD_ITEMS:
        return True
    return sum(len(item.completion) for item in items) >= RULES_OFFLOAD_CHARS


async def _run_rules(heavy: bool, func: Callable[..., _Result], *args: object) -> _Result:
    return await asyncio.to_thread(func, *args) if heavy else func(*args)


class InvalidRequest(ValueError):
    """A request the service cannot honour; ``param`` names the field (and item index)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class CertaintyUnavailable(ScorerError):
    """The scorer failed as a whole and the server is configured to fail the request."""


class RewardObserver(Protocol):
    """Telemetry hook (see :mod:`reward_server.telemetry`)."""

    def observe_results(self, results: Sequence[ItemResult], truths: Sequence[Action]) -> None:
        ...


@dataclass(frozen=True)
class ServiceOptions:
    """How the service treats self-certainty."""

    # "null": a scorer failure gives self_certainty null with a reason, rules still return;
    # "error": it fails the request with 503 (for users who never want a partial reward).
    on_certainty_failure: str = "null"


@lru_cache(maxsize=256)
def _config_with(base: RewardConfig, overrides: tuple[tuple[str, object], ...]) -> RewardConfig:
    return base.with_overrides(dict(overrides))


def effective_config(
    base: RewardConfig, overrides: ConfigOverrides | None, profile: str | None = None
) -> RewardConfig:
    """``base``, or the named ``profile`` in its place, with a request's overrides applied
    (validated, cached per distinct set)."""
    if profile is not None:
        base = load_config(profile)
    if overrides is None:
        return base
    values = overrides_dict(overrides)
    if not values:
        return base
    try:
        return _config_with(base, tuple(sorted(values.items())))
    except ValueError as exc:
        raise InvalidRequest(f"invalid config override: {exc}", param="config") from None


_Outcome = TypeVar("_Outcome")


def _parse_all(
    items: Sequence[RewardItem | EvaluateItem],
    config: RewardConfig,
    parse: Callable[[str, str, int], _Outcome] = parse_fields,
) -> list[_Outcome]:
    """``parse`` of every item's completion with the config's mode and length bound."""
    mode, max_chars = config.parse_mode, config.max_completion_chars
    return [parse(item.completion, mode, max_chars) for item in items]


def _prompt_fields(item: RewardItem) -> dict[str, object]:
    if item.prompt_ids is not None:
        return {"prompt_ids": tuple(item.prompt_ids)}
    if isinstance(item.prompt, list):
        return {"prompt_messages": tuple((m.role, m.content) for m in item.prompt)}
    if item.prompt is not None:
        return {"prompt_text": item.prompt}
    return {}


def _check_provided(
    items: Sequence[RewardItem], outcomes: Sequence[ParsedFields | FormatFailure]
) -> None:
    """With ``provided`` certainty every well-formed item needs its value; an item whose
    format fails has no rationale to be certain about, and its reward is 0 whatever it
    sends (REWARD_CONTRACT.md §4)."""
    for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        if item.self_certainty is None and type(outcome) is not FormatFailure:
            raise InvalidRequest(
                "self_certainty_source is 'provided' but this item has none",
                param=f"items[{index}].self_certainty",
            )


class RewardService:
    """Scores :class:`RewardRequest` batches. Built once by the app factory."""

    def __init__(
        self,
        config: RewardConfig,
        scorer: Scorer | None = None,
        observer: RewardObserver | None = None,
        options: ServiceOptions | None = None,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.observer = observer
        self.options = options or ServiceOptions()

    @property
    def default_source(self) -> CertaintySource:
        return "model" if self.scorer is not None else "none"

    @property
    def ready(self) -> bool:
        return self.scorer is None or self.scorer.ready

    async def score(self, request: RewardRequest, deadline: float | None = None) -> ScoredBatch:
        """Rewards for every item of ``request``, in order (REWARD_CONTRACT.md §5)."""
        started = time.perf_counter()
        config = effective_config(self.config, request.config, request.profile)
        source = request.self_certainty_source or self.default_source
        items = request.items
        self._check_source(source)
        heavy = rules_are_heavy(items)
        outcomes = await _run_rules(heavy, _parse_all, items, config)
        rules_seconds = time.perf_counter() - started
        if source == "provided":
            _check_provided(items, outcomes)

        certainties: list[Certainty]
        values: list[float | None]
        queue_seconds = forward_seconds = 0.0
        if source == "model":
            measured, queue_seconds, forward_seconds = await self._model_certainty(
                items, outcomes, config, deadline
            )
            certainties = [info for info, _ in measured]
            values = [value for _, value in measured]
        elif source == "provided":
            values = [item.self_certainty for item in items]
            # compose_batch drops the value of a failed format: say why it is null.
            certainties = [
                provided_certainty(type(outcome) is not FormatFailure) for outcome in outcomes
            ]
        else:
            values = [None] * len(items)
            certainties = [NO_CERTAINTY] * len(items)

        truths = [item.ground_truth for item in items]
        # A failed format composes to 0 with no certainty term (REWARD_CONTRACT.md §5).
        composing = time.perf_counter()
        breakdowns = await _run_rules(heavy, compose_batch, outcomes, truths, config, values)
        rules_seconds += time.perf_counter() - composing
        results = [
            ItemResult(index, item.id, breakdown, info)
            for index, (item, breakdown, info) in enumerate(
                zip(items, breakdowns, certainties, strict=True)
            )
        ]
        if self.observer is not None:
            self.observer.observe_results(results, truths)
        return ScoredBatch(
            results=results,
            config_hash=config.config_hash(),
            model=self.scorer.model_name if self.scorer is not None else None,
            total_seconds=time.perf_counter() - started,
            rules_seconds=rules_seconds,
            queue_seconds=queue_seconds,
            forward_seconds=forward_seconds,
        )

    def _check_source(self, source: CertaintySource) -> None:
        if source == "model" and self.scorer is None:
            raise InvalidRequest(
                "self_certainty_source 'model' needs a server started with a model",
                param="self_certainty_source",
            )

    async def _model_certainty(
        self,
        items: Sequence[RewardItem],
        outcomes: Sequence[ParsedFields | FormatFailure],
        config: RewardConfig,
        deadline: float | None,
    ) -> tuple[list[tuple[Certainty, float | None]], float, float]:
        """(certainty, value) per item, plus the slowest item's queue and forward seconds."""
        assert self.scorer is not None
        parsed = [(i, out) for i, out in enumerate(outcomes) if isinstance(out, ParsedFields)]
        wanted = [i for i, _ in parsed]
        requests = []
        for i, fields in parsed:
            span = fields.rationale_span
            assert span is not None  # _parse_all has parse_fields look for it
            ids = items[i].completion_ids
            requests.append(
                CertaintyRequest(
                    completion_text=items[i].completion,
                    rationale_span=span,
                    completion_ids=tuple(ids) if ids else None,
                    kind=config.certainty_kind,
                    temperature=config.temperature,
                    **_prompt_fields(items[i]),  # type: ignore[arg-type]
                )
            )
        measured: list[CertaintyResult]
        try:
            measured = await self.scorer.score(requests, deadline) if requests else []
        except ScorerError:
            raise
        except Exception as exc:  # the backend failed as a whole: report, never hide
            log.exception("self-certainty backend failed for %d items", len(requests))
            if self.options.on_certainty_failure == "error":
                raise CertaintyUnavailable(f"self-certainty backend failed: {exc}") from exc
            detail = f"{type(exc).__name__}: {exc}"[:500]
            measured = [CertaintyResult(None, "backend_error", detail) for _ in requests]
        if self.options.on_certainty_failure == "error":
            failed = next((r for r in measured if r.reason == "backend_error"), None)
            if failed is not None:
                raise CertaintyUnavailable(f"self-certainty backend failed: {failed.detail}")
        if len(measured) != len(requests):
            raise RuntimeError(f"scorer returned {len(measured)} results for {len(requests)}")
        out: list[tuple[Certainty, float | None]] = [(FORMAT_FAILURE_CERTAINTY, None)] * len(items)
        for index, result in zip(wanted, measured, strict=True):
            info = Certainty(
                "model", result.reason, result.detail, result.approximate, result.rationale_tokens
            )
            # §4 defines the value over prompt and completion: one computed without the
            # prompt is a different quantity, so it is labelled, never passed off.
            reason = approximate_reason(
                result.value, "model", prompt_sent=bool(_prompt_fields(items[index]))
            )
            if reason is not None:
                info = info._replace(
                    reason=reason, detail=APPROXIMATE_DETAILS[reason], approximate=True
                )
            out[index] = (info, result.value)
        queue_seconds = max((r.queue_seconds for r in measured), default=0.0)
        forward_seconds = max((r.forward_seconds for r in measured), default=0.0)
        return out, queue_seconds, forward_seconds

    async def evaluate(self, request: EvaluateRequest) -> EvalMetrics:
        """Section-6 metrics over a posted batch."""
        config = effective_config(self.config, request.config)
        items = request.items
        outcomes = await _run_rules(
            rules_are_heavy(items), _parse_all, items, config, parse_completion
        )
        pairs = list(zip(outcomes, [item.ground_truth for item in items], strict=True))
        return await asyncio.to_thread(evaluate, pairs, config.similarity_threshold)

