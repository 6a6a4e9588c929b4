"""The transformers backend on CUDA (REWARD_CONTRACT.md §4): the real GPU path (a model
directory loaded in bfloat16, packed forwards with FlexAttention) gives the CPU (float32)
values within bfloat16 rounding, finite and in order, the same per-item failures, values
that do not depend on batch mates, packing or the attention kernel, and a pack budget
taken from free memory. Skipped where no CUDA device is visible.

Tolerances are relative. bfloat16 keeps 8 significand bits, so every weight and every
activation the GPU path stores is rounded by up to 2^-9 (~2e-3) of itself; the CPU path
keeps float32. ``DEVICE_RTOL`` (GPU against CPU) and ``BATCH_RTOL`` (GPU against GPU with
other batch mates, packs or kernels) leave room for that rounding through a few layers.
The items' values span about 5 to 15 nats (the two kinds differ by more than 2x), so an
item scored with another's rows, a pack mate's keys or the wrong reduction misses by far
more.
"""

from __future__ import annotations

import math

import pytest
import torch
from certainty_helpers import HTML, PROMPT, RATIONALES, shop_request

from reward_server.certainty import build_scorer
from reward_server.certainty.token_budget import CUDA_CAP, CUDA_FLOOR
from reward_server.certainty.transformers_backend import TransformersBackend
from reward_server.certainty.types import CertaintyRequest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEVICE_RTOL = 1e-2  # CUDA bfloat16 against CPU float32
BATCH_RTOL = 5e-3  # CUDA against CUDA: the same item with other batch mates or packing



def mixed_requests() -> list[CertaintyRequest]:
    """A shared-prompt group, unrelated prompts, both kinds, two temperatures, no prompt."""
    reqs = []
    for i, r in enumerate(RATIONALES):
        reqs.append(shop_request(r, prompt_text=PROMPT))
        reqs.append(shop_request(r, prompt_text=HTML + f" step {i}"))
        reqs.append(shop_request(r, kind="kl_to_uniform", temperature=0.6, prompt_text=PROMPT))
    reqs.append(shop_request(RATIONALES[0]))
    return reqs


def close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b))


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs):
    return tiny_model_dirs[1][0]


@pytest.fixture(scope="module")
def cpu_backend(model_dir):
    return TransformersBackend.from_pretrained(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def cuda_backend(model_dir):
    backend = TransformersBackend.from_pretrained(str(model_dir), device="cuda")
    backend.warmup()  # lm_head(hidden) reproduces the model's logits in bfloat16 too
    return backend


def test_the_cuda_path_is_bf16_on_the_gpu(cuda_backend, cpu_backend):
    assert cuda_backend.device.type == "cuda"
    assert cuda_backend.dtype == torch.bfloat16
    # FlexAttention compiled and passed the warm-up check (no fall-back to sdpa_blocks).
    assert cuda_backend.attention == "flex"
    # The pack budget comes from free memory: whole blocks, between the floor and the cap.
    assert CUDA_FLOOR <= cuda_backend.pack_tokens <= CUDA_CAP
    assert cuda_backend.pack_tokens % 128 == 0
    assert all(p.device.type == "cuda" for p in cuda_backend.model.parameters())
    assert cpu_backend.dtype == torch.float32
    assert cuda_backend.vocab_size == cpu_backend.vocab_size


def test_cuda_values_match_cpu_in_order(cuda_backend, cpu_backend):
    reqs = mixed_requests()
    on_cpu = cpu_backend.score_batch(reqs)
    on_gpu = cuda_backend.score_batch(reqs)
    assert len(on_gpu) == len(reqs)
    for i, (c, g) in enumerate(zip(on_cpu, on_gpu, strict=True)):
        assert g.reason is None and g.value is not None, (i, g)
        assert math.isfinite(g.value)
        assert g.rationale_tokens == c.rationale_tokens and g.total_tokens == c.total_tokens
        assert close(g.value, c.value, DEVICE_RTOL), (i, g.value, c.value)
    # Not vacuous: the same values in reverse order would not pass.
    values = [r.value for r in on_gpu]
    assert any(
        not close(v, c.value, DEVICE_RTOL) for v, c in zip(reversed(values), on_cpu, strict=True)
    )
    # The reversed batch gives the reversed values.
    backwards = [r.value for r in cuda_backend.score_batch(reqs[::-1])]
    for v, w in zip(values, reversed(backwards), strict=True):
        assert close(v, w, BATCH_RTOL)


def test_failures_are_the_same_on_cuda(cuda_backend, cpu_backend, tiny_tokenizer):
    base = shop_request(prompt_text=PROMPT)
    start = base.rationale_span[0]
    other_ids = tuple(tiny_tokenizer("something else", add_special_tokens=False)["input_ids"])
    reqs = [
        CertaintyRequest(base.completion_text, (start, start), prompt_text=PROMPT),
        CertaintyRequest(base.completion_text, (5, 10_000), prompt_text=PROMPT),
        CertaintyRequest(base.completion_text, base.rationale_span, prompt_ids=(10**7,)),
        CertaintyRequest(base.completion_text, base.rationale_span, temperature=0.0),
        CertaintyRequest(base.completion_text, base.rationale_span, completion_ids=other_ids),
        shop_request(prompt_text="word " * 400),  # the tiny model has 256 positions
        base,
    ]
    expected = [
        "empty_span",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "span_mismatch",
        "too_long",
        None,
    ]
    on_cpu = cpu_backend.score_batch(reqs)
    on_gpu = cuda_backend.score_batch(reqs)
    assert [r.reason for r in on_gpu] == [r.reason for r in on_cpu] == expected
    assert all(r.value is None for r in on_gpu[:-1])
    assert close(on_gpu[-1].value, on_cpu[-1].value, DEVICE_RTOL)


def test_values_do_not_depend_on_batch_mates_on_cuda(cuda_backend, tiny_tokenizer):
    reqs = mixed_requests()
    alone = [cuda_backend.score_batch([r])[0].value for r in reqs]
    mixed = [r.value for r in cuda_backend.score_batch(reqs)]
    group = [r.value for r in cuda_backend.score_batch([reqs[0]] * 8)]
    # Small packs and reduction chunks: groups split over documents and forwards.
    small = TransformersBackend.from_model(
        cuda_backend.model, tiny_tokenizer, pack_tokens=20, chunk_rows=3
    )
    split = [r.value for r in small.score_batch(reqs)]
    for i, (a, m, s) in enumerate(zip(alone, mixed, split, strict=True)):
        assert close(m, a, BATCH_RTOL), (i, m, a)
        assert close(s, a, BATCH_RTOL), (i, s, a)
    assert all(close(g, alone[0], BATCH_RTOL) for g in group)


def test_flex_and_sdpa_blocks_agree_on_cuda(cuda_backend, tiny_tokenizer):
    reqs = mixed_requests()
    flex = [r.value for r in cuda_backend.score_batch(reqs)]
    blocks = TransformersBackend.from_model(
        cuda_backend.model, tiny_tokenizer, attention="sdpa_blocks"
    )
    other = [r.value for r in blocks.score_batch(reqs)]
    for i, (a, b) in enumerate(zip(flex, other, strict=True)):
        assert close(a, b, BATCH_RTOL), (i, a, b)


def test_one_compiled_kernel_serves_every_pack(cuda_backend, tiny_tokenizer):
    """Packs of other lengths and structures reuse the compiled FlexAttention graph: a
    recompilation per batch would soon hit dynamo's limit and fall back to the unfused
    kernel, which materialises the whole score matrix."""
    from torch._dynamo.utils import counters

    reqs = mixed_requests()
    cuda_backend.score_batch(reqs[:2])
    graphs = counters["stats"]["unique_graphs"]
    for n in (1, 5, len(reqs)):
        cuda_backend.score_batch(reqs[:n] * 3)
    assert counters["stats"]["unique_graphs"] == graphs


def test_many_documents_in_one_pack_on_cuda(cuda_backend, cpu_backend):
    """Forty unrelated prompts and a group of 24 in one forward, several 128-token blocks
    per document and documents straddling blocks: every value is the CPU one."""
    reqs = [shop_request(RATIONALES[i % 4], prompt_text=HTML + f" page {i}") for i in range(40)]
    reqs += [shop_request(f"I compare offer {i} first.", prompt_text=PROMPT) for i in range(24)]
    on_gpu, stats = cuda_backend.score_encoded([cuda_backend.encode(r) for r in reqs])
    assert stats.extra["forwards"] == 1.0
    on_cpu = cpu_backend.score_batch(reqs)
    for i, (g, c) in enumerate(zip(on_gpu, on_cpu, strict=True)):
        assert g.value is not None and close(g.value, c.value, DEVICE_RTOL), (i, g, c)


async def test_scorer_loads_scores_and_reloads_on_cuda(tiny_model_dirs, cpu_backend):
    root, (dir1, dir2) = tiny_model_dirs
    reqs = mixed_requests()[:6]
    want1 = [r.value for r in cpu_backend.score_batch(reqs)]
    want2 = [
        r.value
        for r in TransformersBackend.from_pretrained(str(dir2), device="cpu").score_batch(reqs)
    ]
    assert any(not close(a, b, 10 * DEVICE_RTOL) for a, b in zip(want1, want2, strict=True))
    scorer = build_scorer(model=str(dir1), device="cuda", max_wait_ms=1, reload_root=str(root))
    await scorer.start()
    try:
        assert scorer.ready and scorer.model_name == "tiny-1"
        got = await scorer.score(reqs)
        for r, w in zip(got, want1, strict=True):
            assert r.value is not None and close(r.value, w, DEVICE_RTOL), (r, w)
        await scorer.reload(str(dir2))
        assert scorer.model_name == "tiny-2"
        got = await scorer.score(reqs)
        for r, w in zip(got, want2, strict=True):
            assert r.value is not None and close(r.value, w, DEVICE_RTOL), (r, w)
    finally:
        await scorer.stop()
