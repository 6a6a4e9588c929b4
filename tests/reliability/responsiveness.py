"""Is the server still answering others while a hostile request runs?

The same two probes, ``GET /healthz`` and a one-item ``POST /v1/rewards``, are timed on
the idle server and again while attack requests run back to back from other threads. A
probe under attack may be slower, but not frozen: it must stay within ``FACTOR`` times its
slowest idle time, plus ``SLACK`` for the scheduler noise of a busy shared machine. A
blocked event loop shows up as seconds, noise as tens of milliseconds; the bound tells the
two apart without a fixed wall-clock limit. The probes must also really overlap attack
requests in flight, or the comparison proves nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

FACTOR = 10.0
SLACK = 0.5
NORMAL_ITEM = {
    "completion": json.dumps({"rationale": "I search for a cable.", "action": {
        "type": "type_and_submit", "name": "search_input", "text": "usb c cable"}}),
    "ground_truth": {"type": "type_and_submit", "name": "search_input", "text": "usb c cable"},
}


@dataclass
class Probes:
    healthz: list[float] = field(default_factory=list)
    request: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # monotonic start, end


def probe(client: httpx.Client, url: str, probes: Probes, headers: dict | None = None) -> None:
    """One round of both probes; each must succeed. The one-item request asks for no
    self-certainty: on a server with a model, its forward pass shares the CPU with the
    attack, which says nothing about the event loop."""
    round_started = time.monotonic()
    started = time.perf_counter()
    response = client.get(url + "/healthz", timeout=60)
    probes.healthz.append(time.perf_counter() - started)
    assert response.status_code == 200, response.text
    started = time.perf_counter()
    response = client.post(url + "/v1/rewards", timeout=60, headers=headers or {},
                           json={"items": [NORMAL_ITEM], "self_certainty_source": "none"})
    probes.request.append(time.perf_counter() - started)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["reward"] == 1001.1
    probes.spans.append((round_started, time.monotonic()))


@dataclass
class AttackLog:
    intervals: list[tuple[float, float]] = field(default_factory=list)
    outcomes: list[object] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def run_attack(attack: Callable[[], object], stop: threading.Event, log: AttackLog) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            outcome = attack()
        except BaseException as exc:  # reported by the test, not swallowed
            log.errors.append(exc)
            return
        log.intervals.append((started, time.monotonic()))
        log.outcomes.append(outcome)


def assert_responsive_under(
    url: str,
    attack: Callable[[], object],
    *,
    attackers: int = 2,
    rounds: int = 6,
    headers: dict | None = None,
) -> AttackLog:
    """Run ``attack`` back to back from ``attackers`` threads while probing; assert the
    probes stay prompt (see the module doc). Returns what the attacks returned."""
    with httpx.Client() as client:
        idle = Probes()
        probe(client, url, idle, headers)  # warm the connection
        idle = Probes()
        for _ in range(rounds):
            probe(client, url, idle, headers)
        stop = threading.Event()
        log = AttackLog()
        threads = [threading.Thread(target=run_attack, args=(attack, stop, log), daemon=True)
                   for _ in range(attackers)]
        for thread in threads:
            thread.start()
        during = Probes()
        try:
            deadline = time.monotonic() + 120
            while not log.intervals and not log.errors and time.monotonic() < deadline:
                time.sleep(0.01)  # the first attack is under way or done
            for _ in range(rounds):
                probe(client, url, during, headers)
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
    assert not log.errors, log.errors
    overlapping = sum(
        any(start < probe_end and probe_start < end for start, end in log.intervals)
        for probe_start, probe_end in during.spans
    )
    assert overlapping >= 1, (
        f"no probe ran while an attack request was in flight: attacks {log.intervals[:3]}"
        f"...{log.intervals[-3:]}, probes {during.spans}"
    )
    attack_seconds = max(end - start for start, end in log.intervals)
    print(f"attack requests: {len(log.intervals)}, longest {attack_seconds * 1000:.0f} ms; "
          f"probes overlapping them: {overlapping}/{len(during.spans)}")
    for name in ("healthz", "request"):
        slowest_idle = max(getattr(idle, name))
        slowest = max(getattr(during, name))
        print(f"{name}: slowest {slowest_idle * 1000:.1f} ms idle, "
              f"{slowest * 1000:.1f} ms under attack")
        assert slowest <= FACTOR * slowest_idle + SLACK, (
            f"{name} took {slowest:.3f} s under attack, {slowest_idle:.3f} s idle"
        )
    return log
