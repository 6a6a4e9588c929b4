#!/usr/bin/env bash
# The training pipeline (shop-r1-train) at its GPU budget, on a CUDA machine, one call:
#
#   bash bench/device_check.sh prepare && bash bench/device_train.sh prepare   # here (PyPI)
#   bash bench/device_train.sh                                                 # there
#
# What it measures: the cost of each stage of `shop-r1-train table --budget gpu` (SFT,
# GRPO steps against a real service, greedy evaluation) on one GPU. The device machine
# has no network and the carried kit is capped well below the 540 MB of SmolLM2's
# weights, so the policy there is SmolLM2-135M-*shaped* with RANDOM weights and the
# embedded tokenizer: the timings are real, the accuracies are not a trained model's
# and are not reported. The table itself comes from `shop-r1-train table --budget gpu
# --device cuda --model DIR` on a machine that has the weights.
#
# Kit (under .cache/device-kit, carried with the working tree): device_check.sh's web-stack
# wheels and tokenizer, plus train-wheels/ (trl, peft, datasets and their light
# dependencies; pyarrow, pandas and matplotlib are used from the machine when it has them,
# and the run says which are missing). Logs and results.json land in $OUT; the whole run
# stays under BUDGET_S (default 450 s).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-python3}"
OUT="${OUT:-/tmp/device-train-out}"
KIT="${KIT:-.cache/device-kit}"
SITE="${SITE:-/tmp/device-check-site}"
WORK="${WORK:-/tmp/device-train}"
BUDGET_S="${BUDGET_S:-450}"
TRAIN_WHEELS="trl peft datasets accelerate dill multiprocess xxhash fsspec tqdm"

if [[ "${1:-}" == prepare ]]; then
    mkdir -p "$KIT/train-wheels"
    pins=()
    for name in $TRAIN_WHEELS; do
        pins+=("$name==$(.venv/bin/python -c \
            'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")")
    done
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$KIT/train-wheels" "${pins[@]}"
    du -sh "$KIT"/*
    exit
fi

mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1
"$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" \
    "$KIT"/wheels/*.whl "$KIT"/train-wheels/*.whl 2>&1 | tail -3 | tee "$OUT/00-wheels.log"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi 2>&1 | tee "$OUT/01-env.log" || true
"$PY" - "$KIT/tokenizer" "$WORK/policy" 2>&1 <<'EOF' | tee -a "$OUT/01-env.log"
"""A SmolLM2-135M-shaped policy with random weights and the embedded tokenizer."""
import importlib.util
import sys

for name in ("torch", "transformers", "trl", "peft", "datasets", "pyarrow", "pandas",
             "matplotlib"):
    print(name, "ok" if importlib.util.find_spec(name) else "MISSING")
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
config = LlamaConfig(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(sys.argv[2])
tokenizer.save_pretrained(sys.argv[2])
print("policy", sys.argv[2], torch.cuda.is_available() and torch.cuda.get_device_name(0))
EOF
set +e
timeout --kill-after=10 "$BUDGET_S" "$PY" -m shop_train.cli table --out "$WORK/table" \
    --model "$WORK/policy" --budget gpu --device cuda --sft-rows 512 --grpo-steps 30 \
    --eval-rows 177 2>&1 | tail -40 | tee "$OUT/02-table.log"
rc=${PIPESTATUS[0]}
set -e
cp "$WORK/table/results.json" "$OUT/" 2>/dev/null || true
"$PY" - "$WORK/table" <<'EOF' | tee "$OUT/summary.txt"
"""Seconds per stage (accuracies omitted: random weights)."""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1])
for stage in ("zero-shot", "sft", "grpo-binary", "grpo-paper"):
    for name in ("summary.json", "eval.json"):
        path = root / stage / name
        if path.is_file():
            data = json.loads(path.read_text())
            print(f"{stage:12} {name:13} {data['seconds']:8.1f} s  rows {data.get('rows')}")
EOF
echo "table rc=$rc" | tee -a "$OUT/summary.txt"
exit "$rc"
