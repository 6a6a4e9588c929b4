"""Published architectures written out in code (``model_shapes``), random models built
from them, and the engine table that maps a ``--model`` setting to its loader."""

from __future__ import annotations

import pytest
import torch
from certainty_helpers import HTML, PROMPT, RATIONALES, reference_value, shop_request

from bench.model_shapes import (
    SHAPES,
    ModelShape,
    parameter_counts,
    random_model,
)
from reward_server.certainty import ModelLoadError
from reward_server.certainty.engines import (
    DEFAULT_ENGINE,
    ENGINES_BY_PREFIX,
    engine_loader,
    split_model_setting,
)
from reward_server.certainty.transformers_backend import TransformersBackend

# The models' published parameter counts (their model cards), which the written-out
# shapes must reproduce exactly.
PUBLISHED = {
    "SmolLM2-135M": 134_515_008,
    "Qwen2.5-0.5B": 494_032_768,
    "Qwen2.5-1.5B": 1_543_714_304,
    "Qwen2.5-3B": 3_085_938_688,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shapes_have_the_published_sizes(name):
    from transformers import AutoModelForCausalLM

    shape = SHAPES[name]
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForCausalLM.from_config(shape.config())
    total, body = parameter_counts(model)
    assert total == PUBLISHED[name]
    # The body excludes the (tied) embedding: what each token's forward multiplies by.
    assert body == total - shape.vocab_size * shape.hidden_size
    assert model.config.tie_word_embeddings is True
    assert model.config.rope_parameters["rope_theta"] == shape.rope_theta


def test_a_random_qwen2_shaped_model_scores_exactly(tiny_tokenizer):
    """A random model of a small Qwen2-style shape (attention biases, grouped keys): the
    packed path gives its float64 reference values."""
    shape = ModelShape("tiny-qwen2", "qwen2", 64, 2, 4, 2, 96, len(tiny_tokenizer) + 20,
                       1_000_000.0, True, 512, 1e-6)
    model = random_model(shape, seed=3)
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)  # peaked rows: errors show
    backend = TransformersBackend.from_model(model, tiny_tokenizer, name=shape.name,
                                             pack_tokens=200)
    backend.warmup()
    reqs = [shop_request(r, prompt_text=p) for r in RATIONALES for p in (PROMPT, HTML)]
    for req, res in zip(reqs, backend.score_batch(reqs), strict=True):
        assert res.value == pytest.approx(reference_value(backend, req), rel=1e-4)


def test_engine_table(tiny_model_dirs):
    _, (model_dir, _) = tiny_model_dirs
    assert split_model_setting("embedded") == (DEFAULT_ENGINE, "embedded")
    assert split_model_setting(f"vllm:{model_dir}") == (ENGINES_BY_PREFIX["vllm:"], str(model_dir))
    backend = engine_loader(DEFAULT_ENGINE, "cpu", None, pack_tokens=64)(str(model_dir))
    assert isinstance(backend, TransformersBackend) and backend.pack_tokens == 64
    # The vLLM engine gets the directory without its prefix; without vLLM it says so.
    vllm = engine_loader(ENGINES_BY_PREFIX["vllm:"], "cpu", None)
    try:
        import vllm as _  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match="vLLM engine is not installed"):
            vllm(f"vllm:{model_dir}")
