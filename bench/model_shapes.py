"""Published model architectures, written out, to build with random weights.

Throughput and memory depend on a model's shape, not on its weights, so a benchmark can
measure a 3B model without shipping (or downloading) 6 GB of weights. The numbers are
those of the models' published ``config.json`` files; the parameter counts they give are
the published sizes (checked in the tests): SmolLM2-135M 134,515,008; Qwen2.5-0.5B
494,032,768; Qwen2.5-1.5B 1,543,714,304; Qwen2.5-3B 3,085,938,688.

Random weights give near-uniform next-token distributions, so values from such a model
say nothing about rationales; they only exercise every kernel at its real size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The architecture fields of a decoder-only model's configuration."""

    name: str
    model_type: str  # "llama" or "qwen2"
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float
    tie_word_embeddings: bool
    max_position_embeddings: int
    rms_norm_eps: float

    def config(self) -> Any:
        """The transformers configuration (attention through SDPA)."""
        from transformers import AutoConfig

        config = AutoConfig.for_model(
            self.model_type,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            intermediate_size=self.intermediate_size,
            vocab_size=self.vocab_size,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_word_embeddings,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
        )
        config._attn_implementation = "sdpa"
        return config


SHAPES: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        ModelShape("SmolLM2-135M", "llama", 576, 30, 9, 3, 1536, 49152, 100000.0, True, 8192,
                   1e-5),
        ModelShape("Qwen2.5-0.5B", "qwen2", 896, 24, 14, 2, 4864, 151936, 1000000.0, True,
                   32768, 1e-6),
        ModelShape("Qwen2.5-1.5B", "qwen2", 1536, 28, 12, 2, 8960, 151936, 1000000.0, True,
                   32768, 1e-6),
        ModelShape("Qwen2.5-3B", "qwen2", 2048, 36, 16, 2, 11008, 151936, 1000000.0, True,
                   32768, 1e-6),
    )
}


def random_model(shape: ModelShape, device: str = "cpu", dtype: Any = None, seed: int = 0) -> Any:
    """A causal LM of ``shape`` with random weights (seeded), built directly on ``device``
    in ``dtype`` (default: float32 on CPU, bfloat16 on CUDA), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from reward_server.certainty.model_loading import MODEL_CONSTRUCTION_LOCK

    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    with MODEL_CONSTRUCTION_LOCK, torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(shape.config(), dtype=dtype)
    return model.eval()


def parameter_counts(model: Any) -> tuple[int, int]:
    """(all parameters, tied weights counted once; those of the decoder layers and final
    norm). The second is what every token's forward multiplies by (``2 N`` FLOPs per token):
    the input embedding is a lookup and the output layer runs on a few rows only."""
    unique = {id(p): p.numel() for p in model.parameters()}
    body = {id(p): p.numel() for p in model.base_model.parameters()}
    body.pop(id(model.get_input_embeddings().weight), None)
    return sum(unique.values()), sum(body.values())
