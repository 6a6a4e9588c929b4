#!/usr/bin/env bash
# One-shot check of the self-certainty path on a CUDA machine, run from the repo root:
#
#   bash bench/device_check.sh prepare   # here, with PyPI: builds the kit (below)
#   bash bench/device_check.sh           # there: every step, logs in $OUT
#
# The kit, under .cache/device-kit/ (ignored by git, about 15 MiB; hand it to the machine
# with the working tree, e.g. the device tool's `carry: [".cache/device-kit"]`):
#   wheels/     the web stack's wheels (cp312, manylinux x86_64, at the versions of this
#               checkout's .venv), installed there into $SITE with pip --no-index
#               --no-deps (the machine is expected to have torch, transformers,
#               tokenizers, numpy, httpx, pytest, hypothesis and prometheus-client, and no
#               network)
#   tokenizer/  the embedded SmolLM2's tokenizer files (no weights). Every model there is
#               built from a published architecture (bench/model_shapes.py)
#               with RANDOM weights: every shape and kernel is real, the values are not a
#               trained model's
#
# Steps, in order of importance, each under `timeout` inside one overall budget
# (BUDGET_S, default 470 s), each logged to its own file in $OUT; a failed step is
# recorded and the next one runs; the exit status is 1 when any step failed or was
# skipped:
#   00-env.log          wheels, nvidia-smi, versions
#   01-test-cuda.log    tests/certainty/test_cuda.py (must not skip when DEVICE=cuda):
#                       bf16 + FlexAttention packs against CPU float32, both attention
#                       kernels, batch independence, the scorer and reload on CUDA
#   02-shapes-small.log bench_certainty.py --shapes SmolLM2-135M: one prompt with 8 and 64
#                       completions, 8 unrelated prompts, the training step (64 prompts x
#                       8 completions): tokens/s and MFU, ours against per-item
#   03-shapes-large.log the same for Qwen2.5-0.5B, -1.5B, -3B on the training step and 8
#                       unrelated prompts (the baseline on a spread subset of the items)
#   04-http.log         `shop-r1-reward serve --device $DEVICE` on a random SmolLM2-shaped
#                       model folder: /v1/rewards with self_certainty_source=model, /metrics
#   05-tests.log        the other certainty tests (not slow) under that torch and
#                       transformers
#   summary.txt         one line per step
# STEPS (a word list, default all of them) picks the steps to run.
#
# A smoke test of this script on a CPU machine (small shapes), e.g.:
#   DEVICE=cpu PY=.venv/bin/python SKIP_WHEELS=1 BUDGET_S=3000 LIMIT_SCALE=10 \
#     SHAPES_SMALL_ARGS="--workloads shared:4,training:2x4 --prompt-tokens 200 \
#       --completion-tokens 40 --repeats 1" STEPS="env shapes_small http" \
#     bash bench/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SELF="$PWD/bench/device_check.sh"

DEVICE="${DEVICE:-cuda}"                   # cuda or cpu
PY="${PY:-python3}"                        # the interpreter that has torch
OUT="${OUT:-/tmp/device-check-out}"        # logs (the device tool sets OUT)
KIT="${KIT:-.cache/device-kit}"
SKIP_WHEELS="${SKIP_WHEELS:-0}"            # 1: use $PY's own packages
SITE="${SITE:-/tmp/device-check-site}"     # where the wheels are installed
MODEL_DIR="${MODEL_DIR:-/tmp/device-check-smollm2}"
WORK="${WORK:-/tmp/device-check}"          # scratch (server log, pid file)
BUDGET_S="${BUDGET_S:-470}"                # the whole script, every step included
LIMIT_SCALE="${LIMIT_SCALE:-1}"            # multiplies every step's own limit (slow machines)
SHAPES_SMALL_ARGS="${SHAPES_SMALL_ARGS:---workloads shared:8,shared:64,unrelated:8,training:64x8 \
--baseline-items 64 --repeats 3}"
SHAPES_LARGE_ARGS="${SHAPES_LARGE_ARGS:---workloads training:64x8,unrelated:8 \
--baseline-items 24 --repeats 2}"
STEPS="${STEPS:-wheels env test_cuda shapes_small shapes_large http tests}"

# The web stack the service needs, at this checkout's versions (see prepare_kit).
WHEEL_PACKAGES="fastapi starlette pydantic pydantic_core annotated-types annotated-doc
typing-inspection typing_extensions opentelemetry-api orjson rapidfuzz uvicorn pytest-asyncio"

export DEVICE PY OUT KIT SKIP_WHEELS SITE MODEL_DIR WORK
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# ------------------------------------------------------------------------------ prepare
prepare_kit() { # here, in the repository, with this checkout's .venv and PyPI
    local venv_py=".venv/bin/python" pins=() name version
    rm -rf "${KIT:?}"
    mkdir -p "$KIT/wheels" "$KIT/tokenizer"
    for name in $WHEEL_PACKAGES; do
        version=$("$venv_py" -c \
            "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
        pins+=("$name==$version")
    done
    "$venv_py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$KIT/wheels" \
        "${pins[@]}"
    "$venv_py" - "$KIT/tokenizer" <<'PYEOF'
"""Copy the embedded SmolLM2's tokenizer files (its de-quantised cache is built if needed)."""
import shutil
import sys
from pathlib import Path

from reward_server.certainty.model_loading import resolve_model_dir

folder, _ = resolve_model_dir("embedded", str(Path.home() / ".cache" / "shop-r1-reward"))
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
             "special_tokens_map.json"):
    if (folder / name).is_file():
        shutil.copy(folder / name, Path(sys.argv[1]) / name)
PYEOF
    du -sh "$KIT"/*
    ls "$KIT/wheels" "$KIT/tokenizer"
}

if [[ "${1:-}" == prepare ]]; then
    prepare_kit
    exit
fi

if [[ "${1:-}" != __run ]]; then # the top level (a step's child inherits all of this)
    mkdir -p "$OUT" "$WORK"
    if [[ "$SKIP_WHEELS" == 1 ]]; then
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
    START=$(date +%s)
    DEADLINE=$((START + BUDGET_S))
    FAILED=0
    for f in summary.txt 00-env.log 01-test-cuda.log 02-shapes-small.log 03-shapes-large.log \
        04-http.log 05-tests.log; do
        : >"$OUT/$f"
    done
fi

record() { # NAME STATUS SECONDS
    printf '%-12s %-22s %5ss\n' "$1" "$2" "$3" | tee -a "$OUT/summary.txt"
}

# step NAME LOG LIMIT_S COMMAND...: run COMMAND under timeout (capped by what is left of
# the budget), its output appended to $OUT/LOG and shown; record how it ended.
step() {
    local name=$1 log=$2 limit=$(($3 * LIMIT_SCALE))
    shift 3
    if [[ " $STEPS " != *" $name "* ]]; then
        record "$name" "not in STEPS" 0
        return 0
    fi
    local left=$((DEADLINE - $(date +%s)))
    if ((left < 20)); then
        echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$OUT/$log"
        record "$name" "skipped (budget)" 0
        FAILED=1
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (limit ${limit}s, $(date -u +%T) UTC)" | tee -a "$OUT/$log"
    local t0 rc
    t0=$(date +%s)
    set +e
    # A shell function runs in a child of this script (timeout runs programs only);
    # timeout signals its whole process group, so children (a server) stop with it.
    if [[ $(type -t "$1") == function ]]; then
        timeout --kill-after=10 "$limit" bash "$SELF" __run "$@" 2>&1 | tee -a "$OUT/$log"
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/$log"
    fi
    rc=${PIPESTATUS[0]}
    set -e
    local took=$(($(date +%s) - t0)) status=ok
    if ((rc == 124 || rc == 137)); then
        status="TIMEOUT after ${limit}s"
    elif ((rc != 0)); then
        status="FAILED rc=$rc"
    fi
    [[ $status == ok ]] || FAILED=1
    echo "=== $name: $status (${took}s)" | tee -a "$OUT/$log"
    record "$name" "$status" "$took"
}

# ------------------------------------------------------------------------------ env
install_wheels() {
    if [[ "$SKIP_WHEELS" == 1 ]]; then
        echo "SKIP_WHEELS=1: using $PY's own packages"
        return 0
    fi
    ls -l "$KIT/wheels"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$KIT"/wheels/*.whl
}

show_env() {
    uname -a
    nproc
    ls -l "$KIT" "$KIT/tokenizer" || true
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "no nvidia-smi"; fi
    "$PY" - <<'EOF'
import importlib
import importlib.metadata
import sys

print("python", sys.version.split()[0], sys.executable)
import torch

print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available())
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print("gpu", props.name, f"{props.total_memory / 2**30:.1f} GiB",
          f"sm_{props.major}{props.minor}", props.multi_processor_count, "SMs")
for name, dist in (
    ("transformers", "transformers"), ("tokenizers", "tokenizers"),
    ("safetensors", "safetensors"), ("accelerate", "accelerate"), ("numpy", "numpy"),
    ("fastapi", "fastapi"), ("starlette", "starlette"), ("pydantic", "pydantic"),
    ("pydantic_core", "pydantic-core"), ("uvicorn", "uvicorn"), ("orjson", "orjson"),
    ("rapidfuzz", "rapidfuzz"), ("opentelemetry", "opentelemetry-api"), ("anyio", "anyio"),
    ("h11", "h11"), ("uvloop", "uvloop"), ("httpx", "httpx"),
    ("prometheus_client", "prometheus-client"), ("pytest", "pytest"),
    ("pytest_asyncio", "pytest-asyncio"), ("hypothesis", "hypothesis"),
    ("typing_extensions", "typing-extensions"),
):
    try:
        module = importlib.import_module(name)
        where = getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
        print(f"{name:18} {importlib.metadata.version(dist):12} {where}")
    except Exception as exc:  # report every missing one, not only the first
        print(f"{name:18} MISSING {type(exc).__name__}: {exc}")
EOF
}

# ------------------------------------------------------------------------------ model
build_model() { # a SmolLM2-135M-shaped folder with random weights and the real tokenizer
    "$PY" - "$KIT/tokenizer" "$MODEL_DIR" <<'PYEOF'
import shutil
import sys
import time
from pathlib import Path

from bench.model_shapes import SHAPES, random_model

kit, dest = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
model = random_model(SHAPES["SmolLM2-135M"], seed=0)
if dest.exists():
    shutil.rmtree(dest)
model.save_pretrained(dest)
for f in kit.iterdir():
    shutil.copy(f, dest / f.name)
print(f"{dest}: {sorted(p.name for p in dest.iterdir())} ({time.perf_counter() - t0:.1f} s)")
PYEOF
}

# ------------------------------------------------------------------------------ tests
cuda_tests() {
    local log="$WORK/test_cuda.out"
    set +e
    "$PY" -m pytest -q -rs -p no:cacheprovider tests/certainty/test_cuda.py 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    if [[ "$DEVICE" == cuda* ]] && grep -q "SKIPPED" "$log"; then
        echo "test_cuda.py was skipped although DEVICE=$DEVICE"
        return 1
    fi
    return "$rc"
}

# ------------------------------------------------------------------------------ http
http_check() {
    build_model
    "$PY" - "$MODEL_DIR" "$DEVICE" "$WORK" <<'EOF'
"""`shop-r1-reward serve` on 127.0.0.1 with the model on DEVICE: /v1/rewards with
self_certainty_source=model, then /metrics; the server is stopped in any case."""
import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

model, device, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
url = f"http://127.0.0.1:{port}"
http = httpx.Client(trust_env=False, timeout=30)  # loopback: no proxy from the environment
log_path = work / "server.log"
cmd = [sys.executable, "-m", "reward_server.cli", "serve", "--host", "127.0.0.1",
       "--port", str(port), "--model", model, "--device", device, "--max-wait-ms", "5"]
print("$", " ".join(cmd), flush=True)
# Same process group as this script: `timeout` stops the server with it.
with open(log_path, "wb") as log:
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
(work / "server.pid").write_text(str(server.pid))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally on timeout

PROMPT = "<html><body><input name='search_input'/><a name='add_to_cart.buy_now'/></body></html>"
SEARCH = {"type": "type_and_submit", "name": "search_input", "text": "usb c cable"}
BUY = {"type": "click", "name": "add_to_cart.buy_now"}


def item(i, rationale, action, truth, prompt=PROMPT):
    completion = json.dumps({"rationale": rationale, "action": action})
    return {"id": i, "prompt": prompt, "completion": completion, "ground_truth": truth}


ITEMS = [
    item(0, "I need a cable, so I search for one.", SEARCH, SEARCH),
    item(1, "This is the one I want; I buy it now.", BUY, BUY),
    {"id": 2, "prompt": PROMPT, "completion": "no json", "ground_truth": {"type": "terminate"}},
    item(3, "Nothing fits my budget, so I leave.", {"type": "terminate"}, {"type": "terminate"},
         prompt=[{"role": "user", "content": "Find a cheap lamp."}]),
    item(4, "I search for a cable again.", SEARCH, BUY, prompt=None),
]
RULES = {0: 1001.1, 1: 1001.0, 3: 0.8, 4: 0.5}  # format + type + attribute + value
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


try:
    t0 = time.monotonic()
    while True:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        if time.monotonic() - t0 > 150:
            raise SystemExit("server not ready after 150 s")
        try:
            ready = http.get(url + "/readyz", timeout=2)
            if ready.status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    print(f"ready after {time.monotonic() - t0:.1f} s:", ready.json(), flush=True)
    print("config:", http.get(url + "/v1/config").json()["model"])

    body = {"items": ITEMS, "self_certainty_source": "model"}
    t1 = time.perf_counter()
    response = http.post(url + "/v1/rewards", json=body, timeout=120)
    print(f"POST /v1/rewards: {response.status_code} in {time.perf_counter() - t1:.3f} s")
    check(response.status_code == 200, "status 200")
    payload = response.json()
    for r in payload.get("results", []):
        print(json.dumps(r, separators=(",", ":")))
    print(json.dumps({k: v for k, v in payload.items() if k != "results"}))
    results = payload["results"]
    check([r["index"] for r in results] == list(range(len(ITEMS))), "results in input order")
    check([r["id"] for r in results] == [it["id"] for it in ITEMS], "ids kept")
    check(payload["model"] == Path(model).name, f"model {payload['model']!r}")
    for r in results:
        s = r["components"]["self_certainty"]
        if r["id"] == 2:
            check(r["reward"] == 0.0 and s is None
                  and r["certainty"]["reason"] == "format_failure", "format failure: no credit")
            continue
        good = (s is not None and math.isfinite(s) and r["certainty"]["source"] == "model"
                and r["certainty"]["rationale_tokens"] > 0)
        check(good, f"item {r['id']}: self-certainty {s} from the model")
        if good:
            want = RULES[r["id"]] + 0.005 * s
            check(abs(r["reward"] - want) <= 1e-9 * abs(want), f"item {r['id']}: reward "
                  f"{r['reward']} = rules {RULES[r['id']]} + 0.005 * s")
    # Batch independence through the service (bfloat16 on CUDA: 5e-3, see test_cuda.py).
    alone = http.post(url + "/v1/rewards", json={"items": [ITEMS[1]]}, timeout=60).json()
    a = alone["results"][0]["components"]["self_certainty"]
    b = results[1]["components"]["self_certainty"]
    check(a is not None and b is not None and abs(a - b) <= 5e-3 * abs(b),
          f"item 1 alone {a} vs in the batch {b}")

    # A few GRPO-like requests (a group of 16 sharing a prompt): latency, for orientation.
    group = {"items": [item(i, f"I compare offer {i} before I buy anything.", BUY, BUY)
                       for i in range(16)]}
    times = []
    for _ in range(5):
        t2 = time.perf_counter()
        r = http.post(url + "/v1/rewards", json=group, timeout=60)
        times.append(time.perf_counter() - t2)
        check(r.status_code == 200, "group of 16: status 200")
    print("group of 16, seconds per request:", " ".join(f"{t:.4f}" for t in times))

    metrics = http.get(url + "/metrics", timeout=10).text
    keep = ("reward_self_certainty", "reward_scorer", "reward_request_seconds")
    lines = [ln for ln in metrics.splitlines()
             if ln.startswith(keep) and "_bucket" not in ln and "_created" not in ln]
    print("\n".join(lines))
    for name in ("reward_scorer_batch_tokens_count", "reward_self_certainty_value_count",
                 "reward_scorer_forward_seconds_count", "reward_request_seconds_count"):
        check(name in metrics, f"metric {name}")

    # The service's values against the backend called directly, on CPU in float32 (this
    # SmolLM2 shape: 30 layers, 9 query and 3 key/value heads, a tied 49152-row head).
    # Random weights give near-uniform rows, so the values are all close to 0.115: this
    # catches NaN or garbage, not subtle errors (tests/certainty/test_cuda.py does that,
    # on a peaked tiny model). On CPU both sides are the same float32 computation.
    from reward_server.certainty.transformers_backend import TransformersBackend
    from reward_server.certainty.types import CertaintyRequest

    rtol = 1e-5 if device == "cpu" else 1e-2
    cpu = TransformersBackend.from_pretrained(model, device="cpu")
    for r, it in zip(results, ITEMS, strict=True):
        s = r["components"]["self_certainty"]
        if s is None:
            continue
        text = it["completion"]
        rationale = json.loads(text)["rationale"]
        start = text.index(rationale)
        prompt = it["prompt"]
        req = CertaintyRequest(
            text, (start, start + len(rationale)),
            prompt_text=prompt if isinstance(prompt, str) else None,
            prompt_messages=tuple((m["role"], m["content"]) for m in prompt)
            if isinstance(prompt, list) else None,
        )
        want = cpu.score_batch([req])[0].value
        check(want is not None and abs(s - want) <= rtol * abs(want),
              f"item {r['id']}: {device} {s} vs cpu float32 {want}")
finally:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    print(f"server exit status {server.returncode}; its log:")
    print(log_path.read_text(errors="replace")[-8000:])
if failures:
    raise SystemExit(f"{len(failures)} check(s) failed: {failures}")
print("HTTP check passed")
EOF
}

stop_leftover_server() {
    local pid_file="$WORK/server.pid"
    if [[ -f "$pid_file" ]]; then
        local pid
        pid=$(cat "$pid_file")
        if kill -0 "$pid" 2>/dev/null; then
            echo "stopping the leftover server $pid"
            kill "$pid" 2>/dev/null || true
            sleep 2
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pid_file"
    fi
}

# ------------------------------------------------------------------------------ run
if [[ "${1:-}" == __run ]]; then # one step, in a child under `timeout` (see step)
    shift
    "$@"
    exit
fi

echo "device check: DEVICE=$DEVICE PY=$PY OUT=$OUT budget ${BUDGET_S}s" | tee -a "$OUT/00-env.log"
step wheels 00-env.log 60 install_wheels
step env 00-env.log 30 show_env
step test_cuda 01-test-cuda.log 170 cuda_tests
# shellcheck disable=SC2086  # the bench arguments are word lists
step shapes_small 02-shapes-small.log 150 "$PY" bench/bench_certainty.py --device "$DEVICE" \
    --shapes SmolLM2-135M --tokenizer "$KIT/tokenizer" $SHAPES_SMALL_ARGS
# shellcheck disable=SC2086
step shapes_large 03-shapes-large.log 240 "$PY" bench/bench_certainty.py --device "$DEVICE" \
    --shapes Qwen2.5-0.5B,Qwen2.5-1.5B,Qwen2.5-3B --tokenizer "$KIT/tokenizer" \
    $SHAPES_LARGE_ARGS
step http 04-http.log 120 http_check
stop_leftover_server
step tests 05-tests.log 120 "$PY" -m pytest -q -x -p no:cacheprovider -m "not slow" \
    tests/certainty --ignore=tests/certainty/test_cuda.py

echo "=== summary ($(($(date +%s) - START))s in all; DEVICE=$DEVICE)"
cat "$OUT/summary.txt"
if ((FAILED)); then
    echo "device check: FAILED (see the logs in $OUT)" | tee -a "$OUT/summary.txt"
    exit 1
fi
echo "device check: all steps passed" | tee -a "$OUT/summary.txt"
