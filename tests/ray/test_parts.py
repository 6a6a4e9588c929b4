"""The Ray application's parts that need no cluster: settings, prompt keys, the per-key
coalescer, the wire values, and the checks the launcher runs before deploying."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from reward_server.certainty.types import (
    CertaintyRequest,
    ScorerDeadlineExceeded,
    ScorerNotReady,
    ScorerOverloaded,
    ScorerRequestTooLarge,
)
from reward_server.config import ServerSettings
from reward_server.ray_serve.coalesce import KeyedCoalescer
from reward_server.ray_serve.launch import (
    LaunchError,
    check_resources,
    last_exception,
    parse_address,
    wait_ready,
)
from reward_server.ray_serve.routing import indices_by_prompt_key, prompt_key
from reward_server.ray_serve.settings import PROMPT_HASH_ROUTER, RaySettings, split_settings
from reward_server.ray_serve.wire import ModelFailure


def _request(**prompt: object) -> CertaintyRequest:
    text = '{"rationale": "I look.", "action": {"type": "terminate"}}'
    return CertaintyRequest(completion_text=text, rationale_span=(15, 22), **prompt)  # type: ignore[arg-type]


# ------------------------------------------------------------------ prompt keys
def test_equal_prompts_share_a_key_and_forms_do_not_collide() -> None:
    chat = (("system", "Shop."), ("user", "Find a lamp."))
    assert prompt_key(_request(prompt_messages=chat)) == prompt_key(_request(prompt_messages=chat))
    keys = {
        prompt_key(_request(prompt_messages=chat)),
        prompt_key(_request(prompt_messages=(("system", "Shop.Find"), ("user", " a lamp.")))),
        prompt_key(_request(prompt_text="system Shop. user Find a lamp.")),
        prompt_key(_request(prompt_ids=(1, 2, 3))),
        prompt_key(_request(prompt_ids=(12, 3))),
    }
    assert len(keys) == 5
    assert prompt_key(_request()) is None


def test_groups_keep_first_seen_order_and_every_index() -> None:
    a, b = _request(prompt_text="a"), _request(prompt_text="b")
    groups = indices_by_prompt_key([a, b, _request(), a, b, a])
    assert list(groups.values()) == [[0, 3, 5], [1, 4], [2]]
    assert list(groups)[2] is None


# ------------------------------------------------------------------ settings
def test_backpressure_setting_is_the_routers_spill_width() -> None:
    spill = RaySettings(on_model_backpressure="spill", spill_replicas=2).router_config()
    assert spill == {"request_router_class": PROMPT_HASH_ROUTER,
                     "request_router_kwargs": {"num_fallback_replicas": 2}}
    wait = RaySettings(on_model_backpressure="wait").router_config()
    assert wait is not None and wait["request_router_kwargs"] == {"num_fallback_replicas": 0}
    assert RaySettings(model_routing="balanced").router_config() is None


@pytest.mark.parametrize("bad", [
    {"ingress_min_replicas": 3, "ingress_max_replicas": 2},
    {"model_min_replicas": 2},
    {"model_resources": '{"node": 0}'},
    {"model_resources": "[1]"},
    {"route_prefix": "reward"},
    {"model_routing": "random"},
])
def test_inconsistent_cluster_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        RaySettings(**bad)


def test_app_builder_settings_come_from_args_then_environment(monkeypatch) -> None:
    monkeypatch.setenv("SHOP_R1_API_KEY", "from-env")
    monkeypatch.setenv("SHOP_R1_MODEL", "ignored: args win")
    monkeypatch.setenv("SHOP_R1_MODEL_MAX_REPLICAS", "ignored: args win")
    monkeypatch.setenv("SHOP_R1_INGRESS_RESOURCES", '{"head": 0.5}')
    monkeypatch.setenv("SHOP_R1_MODEL_RESOURCES", "")  # empty: none
    server, cluster = split_settings(
        {"model": "none", "model_min_replicas": 2, "model_max_replicas": 3},
    )
    assert server.model == "none" and server.api_key == "from-env"
    assert (cluster.model_min_replicas, cluster.model_max_replicas) == (2, 3)
    assert cluster.ingress_resources == {"head": 0.5} and cluster.model_resources == {}
    with pytest.raises(ValueError, match="unknown setting"):
        split_settings({"modle": "none"})
    monkeypatch.setenv("SHOP_R1_INGRESS_MAX_REPLICAS", "many")
    with pytest.raises(ValidationError, match="ingress_max_replicas"):
        split_settings({})


def test_each_deployment_has_the_same_replica_settings() -> None:
    cluster = RaySettings(ingress_min_replicas=2, ingress_max_replicas=5,
                          model_num_gpus=0.5, model_resources={"gpu_node": 1})
    ingress, model = cluster.replicas("ingress"), cluster.replicas("model")
    assert (ingress.min_replicas, ingress.max_replicas, ingress.num_gpus) == (2, 5, None)
    assert (model.num_gpus, model.resources) == (0.5, {"gpu_node": 1.0})
    assert (ingress.target_ongoing_requests, model.target_ongoing_requests) == (16.0, 64.0)


# ------------------------------------------------------------------ wire
@pytest.mark.parametrize("error", [
    ScorerOverloaded("full", retry_after=7.5),
    ScorerRequestTooLarge("split it", limit=64),
    ScorerNotReady("loading"),
    ScorerDeadlineExceeded("late"),
])
def test_a_refusal_comes_back_as_the_same_error(error: Exception) -> None:
    back = ModelFailure.of(error).as_error()  # type: ignore[arg-type]
    assert type(back) is type(error) and str(back) == str(error)
    assert getattr(back, "retry_after", None) == getattr(error, "retry_after", None)
    assert getattr(back, "limit", None) == getattr(error, "limit", None)


# ------------------------------------------------------------------ resends
class _DyingReplicas:
    """A model deployment handle whose replica dies under the first ``deaths`` calls: a
    fault a test cannot stage on demand through Serve (it replaces dead replicas)."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        self.calls = 0
        self.score = self

    def options(self, **_: object) -> _DyingReplicas:
        return self

    async def remote(self, group: list, remaining_s: float | None, key: str | None) -> list:
        from ray.exceptions import RayActorError

        self.calls += 1
        if self.calls <= self.deaths:
            raise RayActorError()
        return [f"result {i}" for i in range(len(group))]


def _scorer(handle: _DyingReplicas, pauses: list[float]):
    from reward_server.ray_serve.remote_scorer import RemoteCertaintyScorer

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    return RemoteCertaintyScorer(handle, model_setting="m", sleep=record)


async def test_no_pause_follows_the_last_failed_attempt() -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]'")
    from reward_server.ray_serve.remote_scorer import RESEND_ATTEMPTS, RESEND_BACKOFF_S

    handle, pauses = _DyingReplicas(deaths=RESEND_ATTEMPTS), []
    scorer = _scorer(handle, pauses)
    with pytest.raises(ScorerNotReady, match=f"in {RESEND_ATTEMPTS} attempts"):
        await scorer.score([_request(prompt_text="p")])
    assert handle.calls == RESEND_ATTEMPTS
    assert pauses == [RESEND_BACKOFF_S * 2**i for i in range(RESEND_ATTEMPTS - 1)]
    assert scorer.calls_resent == RESEND_ATTEMPTS - 1


async def test_a_resent_call_answers_in_order_and_pauses_are_bounded_by_the_deadline() -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'shop-r1-reward[ray]'")
    handle, pauses = _DyingReplicas(deaths=1), []
    scorer = _scorer(handle, pauses)
    results = await scorer.score([_request(prompt_text="p")] * 2)
    assert results == ["result 0", "result 1"] and handle.calls == 2
    assert len(pauses) == 1 and scorer.calls_resent == 1
    handle, pauses = _DyingReplicas(deaths=1), []
    results = await _scorer(handle, pauses).score(
        [_request(prompt_text="p")], deadline=time.monotonic() + 0.05
    )
    assert results == ["result 0"] and pauses[0] <= 0.05


# ------------------------------------------------------------------ coalescer
class _Recorder:
    def __init__(self, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[list[int], float | None]] = []
        self.fail = fail
        self.delay = delay

    async def send(self, items: list[int], deadline: float | None) -> list[int]:
        self.calls.append((list(items), deadline))
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


async def test_calls_of_one_key_within_the_window_are_sent_as_one() -> None:
    recorder = _Recorder()
    coalescer = KeyedCoalescer(recorder.send, window_s=0.05, max_items=64)
    answers = await asyncio.gather(*(
        coalescer.submit(f"k{i % 2}", [i, i + 100], None) for i in range(6)
    ))
    assert answers == [[i * 10, (i + 100) * 10] for i in range(6)]
    assert sorted(items for items, _ in recorder.calls) == [
        [0, 100, 2, 102, 4, 104], [1, 101, 3, 103, 5, 105]
    ]


async def test_a_full_gathering_goes_at_once_and_the_latest_deadline_is_sent() -> None:
    recorder = _Recorder()
    coalescer = KeyedCoalescer(recorder.send, window_s=60.0, max_items=4)
    now = time.monotonic()
    answers = await asyncio.wait_for(asyncio.gather(
        coalescer.submit("k", [1, 2], now + 30), coalescer.submit("k", [3, 4], now + 40)
    ), timeout=5)
    assert answers == [[10, 20], [30, 40]]
    assert recorder.calls == [([1, 2, 3, 4], now + 40)]


async def test_a_failure_reaches_every_caller_and_a_deadline_only_its_own() -> None:
    failing = KeyedCoalescer(_Recorder(fail=ScorerOverloaded("full")).send, 0.01, 64)
    outcomes = await asyncio.gather(failing.submit("k", [1], None), failing.submit("k", [2], None),
                                    return_exceptions=True)
    assert all(isinstance(o, ScorerOverloaded) for o in outcomes)
    slow = _Recorder(delay=0.3)
    coalescer = KeyedCoalescer(slow.send, 0.01, 64)
    early = coalescer.submit("k", [1], time.monotonic() + 0.1)
    late = coalescer.submit("k", [2], None)
    outcomes = await asyncio.gather(early, late, return_exceptions=True)
    assert isinstance(outcomes[0], TimeoutError) and outcomes[1] == [20]


# ------------------------------------------------------------------ launch checks
@pytest.mark.parametrize(("address", "expected"), [
    ("auto", None),
    ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("10.0.0.5", ("10.0.0.5", 6379)),
    ("ray://head.svc", ("head.svc", 10001)),
    ("ray://[fd00::1]:10001", ("fd00::1", 10001)),
])
def test_addresses_are_parsed_to_what_is_probed(address: str, expected: object) -> None:
    assert parse_address(address) == expected


def test_resources_the_cluster_lacks_are_named_with_the_flag() -> None:
    have = {"CPU": 8.0, "GPU": 1.0}
    check_resources(have, ServerSettings(), RaySettings(model_num_gpus=1), "x")
    with pytest.raises(LaunchError, match=r"needs 2 GPU\(s\), but the Ray cluster at x has 1"):
        check_resources(have, ServerSettings(),
                        RaySettings(model_num_gpus=1, model_min_replicas=2, model_max_replicas=2),
                        "x")
    # A rules-only service asks for no model resources at all.
    check_resources(have, ServerSettings(model="none"), RaySettings(model_num_gpus=4), "x")
    with pytest.raises(LaunchError, match="--device cuda with --model-num-gpus 0"):
        check_resources(have, ServerSettings(device="cuda"), RaySettings(), "x")


class _SlowReadiness:
    """An ingress handle whose readiness probe times out ``stalls`` times (a replica busy
    starting: a fault a real cluster does not stage on demand), then answers ``ready``."""

    def __init__(self, stalls: int, ready: bool = True) -> None:
        self.stalls, self.ready, self.timeouts = stalls, ready, []
        self.readiness = self

    def remote(self) -> _SlowReadiness:
        return self

    def result(self, timeout_s: float) -> dict:
        self.timeouts.append(timeout_s)
        if len(self.timeouts) <= self.stalls:
            time.sleep(timeout_s)
            raise TimeoutError(f"no answer within {timeout_s}s")
        return {"ready": self.ready}


def test_a_readiness_probe_that_times_out_is_asked_again() -> None:
    handle = _SlowReadiness(stalls=2)
    wait_ready(handle, timeout_s=30, probe_timeout_s=0.05)
    assert handle.timeouts == [0.05, 0.05, 0.05]


def test_readiness_that_never_comes_is_a_launch_error_within_the_deadline() -> None:
    handle = _SlowReadiness(stalls=1_000)
    with pytest.raises(LaunchError, match=r"not ready after 0\.3s"):
        wait_ready(handle, timeout_s=0.3, probe_timeout_s=0.1)
    # No probe waits past what is left of the deadline.
    assert all(t <= 0.1 for t in handle.timeouts)
    assert sum(handle.timeouts) <= 0.3 + 1e-9


def test_a_failed_deployment_is_named_by_the_exception_at_the_end_of_its_traceback():
    message = """The deployment failed to start 3 times in a row. See controller logs. Error:
RuntimeError: Traceback (most recent call last):
  File "tokenization_utils_tokenizers.py", line 422, in __init__
    raise ValueError(
ValueError: Couldn't instantiate the backend tokenizer from one of:
(1) a serialization file

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "model_loading.py", line 160, in load_model_and_tokenizer
reward_server.certainty.model_loading.ModelLoadError: cannot load model from '/m': Couldn't
(1) a serialization file
"""
    assert last_exception(message) == (
        "ModelLoadError: cannot load model from '/m': Couldn't (1) a serialization file"
    )
    assert last_exception("no traceback here\n  just words  \n") == "just words"
    assert last_exception("") == ""
    assert len(last_exception("KeyError: " + "x" * 5000)) == 1000
