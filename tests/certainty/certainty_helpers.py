"""Helpers of the certainty tests: a tokenizer and a tiny random Llama built in code (no
network), Shop-R1 requests with their rationale span, and a float64 reference value."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from reward_server.certainty.types import CertaintyRequest

# Shared inputs: a chat prompt, an HTML-like page and first-person rationales.
PROMPT = "<|im_start|>user\nFind a graphics card.<|im_end|>\n<|im_start|>assistant\n"
HTML = (
    "<html><body><input name='search_input'/><a name='add_to_cart.buy_now'>Buy now</a>"
    "<div name='refinements.customer_reviews'>4 stars & up</div></body></html>"
)
RATIONALES = [
    "I want a graphics card, so I search for the one I have in mind.",
    "The reviews matter to me, so I sort by customer reviews.",
    "Nothing here fits my budget, I leave.",
    "I want a café table ✓ under $50.",
]

# A cache shared by test runs: the first de-quantisation of the GGUF takes tens of seconds.
EMBEDDED_CACHE = Path.home() / ".cache" / "shop-r1-reward-test"

CORPUS = [
    '{"rationale": "I want a graphics card, so I search for the one I have in mind.", '
    '"action": {"type": "type_and_submit", "name": "search_input", "text": "rtx 5090"}}',
    '{"rationale": "The reviews matter to me, so I sort by customer reviews.", '
    '"action": {"type": "click", "name": "refinements.customer_reviews"}}',
    '{"rationale": "Nothing here fits my budget, I leave.", "action": {"type": "terminate"}}',
    "<html><body><input name='search_input'/><a name='add_to_cart.buy_now'>Buy now</a>"
    "<div name='refinements.customer_reviews'>4 stars & up</div></body></html>",
    "You are a shopper. Find a café table ✓ under $50 for the kitchen, then add it to cart.",
]


def make_tokenizer():
    """A byte-level BPE tokenizer trained in code on a few Shop-R1-like lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return fast


def make_tiny_model(seed: int, vocab_size: int, max_positions: int = 256):
    """A 2-layer random Llama whose logits width (vocab_size) exceeds the tokenizer's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        # Larger weights give peaked, token-dependent distributions, so a wrong alignment
        # or mask changes the value by far more than the tolerance.
        model.lm_head.weight.mul_(40.0)
    return model


def shop_request(
    rationale: str = "I want a graphics card, so I search for the one I have in mind.",
    action: str = '{"type": "type_and_submit", "name": "search_input", "text": "rtx 5090"}',
    **kw,
) -> CertaintyRequest:
    """A Shop-R1 completion with its rationale span (the string value, inside the quotes)."""
    text = '{"rationale": "' + rationale + '", "action": ' + action + "}"
    start = text.index(rationale)
    span = (start, start + len(rationale))
    return CertaintyRequest(completion_text=text, rationale_span=span, **kw)


def reference_certainty(
    full_logits: torch.Tensor, positions: list[int], temperature: float, kind: str
) -> float:
    """Float64 reference (REWARD_CONTRACT.md §4): mean over token positions ``t`` of the
    reduction of row ``t - 1``, from a full float64 log-softmax of ``full_logits [L, V]``
    (the logits of a whole sequence; ``positions`` index its tokens, each >= 1)."""
    z = full_logits.double()[[t - 1 for t in positions]] / temperature
    logp = torch.log_softmax(z, dim=-1)
    log_v = math.log(z.shape[-1])
    if kind == "kl_uniform":
        vals = -logp.mean(dim=-1) - log_v
    else:
        vals = log_v + (logp.exp() * logp).sum(dim=-1)
    return float(vals.mean())


def reference_value(backend, req: CertaintyRequest) -> float:
    """Float64 value from the model's full logits of the item alone (its own forward: no
    packing, no cache)."""
    enc = backend.encode(req)
    ids = list(enc.prompt_ids) + enc.completion_ids
    with torch.inference_mode():
        full = backend.model(input_ids=torch.tensor([ids], device=backend.device)).logits[0]
    n = len(enc.prompt_ids)
    return reference_certainty(full, [n + p for p in enc.positions], req.temperature, req.kind)
