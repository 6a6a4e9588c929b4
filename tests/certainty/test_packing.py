"""Packed forwards (REWARD_CONTRACT.md §4): the plan, the block structure of the attention,
both attention kernels against a dense-mask reference, and the backend's values against
the float64 reference whatever the pack mates, the budget or the kernel."""

from __future__ import annotations

import random
import shutil

import pytest
import torch
from certainty_helpers import HTML, PROMPT, RATIONALES, reference_value, shop_request

from reward_server.certainty import packed_attention
from reward_server.certainty.encoding import EncodedItem
from reward_server.certainty.packed_attention import (
    PackLayout,
    block_lists,
    pack_runs,
    token_table,
)
from reward_server.certainty.packing import Pack, plan_packs
from reward_server.certainty.token_budget import (
    CPU_DOCUMENT_TOKENS,
    CPU_PACK_TOKENS,
    bytes_per_token,
    document_token_budget,
    pack_token_budget,
)
from reward_server.certainty.transformers_backend import TransformersBackend
from reward_server.certainty.types import CertaintyResult

# The compiled FlexAttention kernel's CPU build is C++ that inductor compiles on the spot.
needs_cxx = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="compiling FlexAttention on CPU needs a C++ compiler",
)


def item(prompt: tuple[int, ...], n: int, positions: list[int] | None = None) -> EncodedItem:
    completion = [100 + i for i in range(n + 3)]  # tokens after the last rationale token
    return EncodedItem(prompt, completion, positions or [n], "kl_uniform", 1.0)


def random_pack(rng: random.Random, docs: int) -> Pack:
    pack = Pack()
    index = 0
    for _ in range(docs):
        prompt = [1] * rng.choice([0, 1, 5, 17, 40])
        members = []
        for _ in range(rng.randint(1, 4)):
            n = rng.choice([0, 1, 3, 9, 30]) if prompt else rng.choice([1, 4, 11])
            members.append((index, item(tuple(prompt), n, [n])))
            index += 1
        pack.add_document(prompt, members)
    return pack


def dense_allowed(pack: Pack, length: int) -> torch.Tensor:
    """The attention rule, element by element, as an ``[L, L]`` boolean (reference only)."""
    doc = torch.full((length,), -1)
    seg = torch.full((length,), -1)
    for d, document in enumerate(pack.documents):
        doc[document.start : document.end] = d
        for s, segment in enumerate(document.segments):
            seg[segment.start : segment.start + segment.length] = s
    doc[pack.length :] = len(pack.documents)  # padding: a document of its own
    q = torch.arange(length)[:, None]
    k = torch.arange(length)[None, :]
    same = doc[:, None] == doc[None, :]
    return same & (k <= q) & ((seg[None, :] < 0) | (seg[None, :] == seg[:, None]))


def dense_attention(q, k, v, allowed, scale):
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


# ---------------------------------------------------------------------------- the plan
def test_plan_shares_prompts_and_respects_the_budget():
    p1, p2 = (1,) * 30, (2,) * 50
    items = [item(p1, 10), item(p2, 5), item(p1, 12), CertaintyResult(None, "too_long"),
             item((), 7), item(p2, 6)]
    [pack] = plan_packs(items, budget=1000)
    # One document per prompt, in order of first appearance; the failure is skipped.
    assert [(d.prompt_len, [s.item for s in d.segments]) for d in pack.documents] == [
        (30, [0, 2]), (50, [1, 5]), (0, [4])
    ]
    assert pack.length == 30 + 10 + 12 + 50 + 5 + 6 + 7
    # Positions restart after the prompt for every completion.
    doc = pack.documents[0]
    second = doc.segments[1]
    assert pack.position_ids[second.start : second.start + 3] == [30, 31, 32]
    # Token t is predicted by the row before it; t == 0 by the prompt's last token.
    first = EncodedItem(p1, [7] * 5, [0, 2], "kl_uniform", 1.0)
    [p] = plan_packs([first], budget=1000)
    assert p.predicting_rows(p.documents[0], p.documents[0].segments[0], first) == [29, 31]

    # A group stays one document up to the document budget, even past the pack budget.
    [big] = [p for p in plan_packs(items, budget=60, document_budget=1000) if 50 in
             [d.prompt_len for d in p.documents]]
    assert [[s.item for s in d.segments] for d in big.documents] == [[1, 5]]
    small = plan_packs(items, budget=60)
    assert all(p.length <= 60 for p in small)
    # The p1 group (30 + 10 + 12 = 52) fits one pack; p2 (50 + 5 + 6) is split in two
    # documents that both repeat the prompt.
    p2_docs = [d for p in small for d in p.documents if d.prompt_len == 50]
    assert [[s.item for s in d.segments] for d in p2_docs] == [[1], [5]]
    assert sorted(i for p in small for i in p.items) == [0, 1, 2, 4, 5]
    # A prompt and completion larger than the budget still get a pack of their own.
    [alone] = plan_packs([item(p2, 40)], budget=60)
    assert alone.length == 90


# ---------------------------------------------------------------------------- blocks
@pytest.mark.parametrize("seed", range(12))
def test_block_lists_cover_exactly_what_the_rule_allows(seed):
    rng = random.Random(seed)
    pack = random_pack(rng, rng.randint(1, 5))
    block = rng.choice([4, 8, 16])
    length = -(-pack.length // block) * block
    allowed = dense_allowed(pack, length)
    tokens = token_table(pack_runs(pack, length), length, torch.device("cpu"))
    partial, full = block_lists(tokens, length, block)
    n = length // block
    blocks = allowed.view(n, block, n, block).permute(0, 2, 1, 3).reshape(n, n, -1)
    any_allowed, all_allowed = blocks.any(-1), blocks.all(-1)
    assert not (partial & full).any()
    assert torch.equal(partial | full, any_allowed)  # no allowed pair is skipped, no waste
    assert not (full & ~all_allowed).any()  # a full block needs no mask


def test_block_lists_find_every_full_block_of_an_aligned_layout():
    """When prompts and completions start on block boundaries no key block straddles two
    runs, and every block whose pairs are all allowed is listed as full."""
    pack = Pack()
    pack.add_document([1] * 64, [(0, item((1,) * 64, 32)), (1, item((1,) * 64, 16))])
    pack.add_document([2] * 24, [(2, item((2,) * 24, 8))])
    length = pack.length
    assert length % 8 == 0
    tokens = token_table(pack_runs(pack, length), length, torch.device("cpu"))
    partial, full = block_lists(tokens, length, 8)
    n = length // 8
    blocks = dense_allowed(pack, length).view(n, 8, n, 8).permute(0, 2, 1, 3).reshape(n, n, -1)
    assert torch.equal(full, blocks.all(-1))
    assert torch.equal(partial, blocks.any(-1) & ~blocks.all(-1))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["sdpa_blocks", "flex"])
def test_kernels_match_a_dense_masked_attention(seed, kind, monkeypatch):
    # Small chunks so one document's completions are split over several query chunks.
    monkeypatch.setattr(packed_attention, "MASK_ELEMENTS", 300)
    rng = random.Random(100 + seed)
    pack = random_pack(rng, rng.randint(1, 4))
    layout = PackLayout(pack, kind, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    length = layout.length
    q = torch.randn(1, 4, length, 8, generator=gen)
    k = torch.randn(1, 2, length, 8, generator=gen)
    v = torch.randn(1, 2, length, 8, generator=gen)
    if kind == "flex":  # eager FlexAttention on CPU: the mask function, not the blocks
        monkeypatch.setattr(packed_attention, "_FLEX", _eager_flex())
    got = layout.attend(q, k, v, scale=0.3)[:, : pack.length]
    want = dense_attention(q, k, v, dense_allowed(pack, length), 0.3)[:, : pack.length]
    assert torch.allclose(got, want, atol=1e-5)


def _eager_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


# ---------------------------------------------------------------------------- budget
def test_token_budget_is_a_setting_on_cpu(tiny_model):
    cpu = torch.device("cpu")
    assert pack_token_budget(tiny_model.config, cpu, torch.float32) == CPU_PACK_TOKENS
    assert pack_token_budget(tiny_model.config, cpu, torch.float32, 512) == 512
    # On CPU a prompt group stays one document well beyond the pack budget, unless the
    # pack budget is set (then it also splits groups) or the document budget is.
    assert document_token_budget(CPU_PACK_TOKENS, cpu) == CPU_DOCUMENT_TOKENS
    assert document_token_budget(512, cpu, pack_setting=512) == 512
    assert document_token_budget(512, cpu, setting=4096, pack_setting=512) == 4096
    with pytest.raises(ValueError):
        pack_token_budget(tiny_model.config, cpu, torch.float32, 0)
    # Per token: 4H + 2(heads + kv_heads)D + 3I values, doubled, in the weights' dtype.
    cfg = tiny_model.config
    values = 4 * 64 + 2 * (4 + 2) * 16 + 3 * 128
    assert bytes_per_token(cfg, torch.bfloat16) == 2 * values * 2 + 64
    assert bytes_per_token(cfg, torch.float32) == 2 * values * 4 + 64


# ---------------------------------------------------------------------------- backend
def _mixed():
    reqs = []
    for i, r in enumerate(RATIONALES):
        reqs.append(shop_request(r, prompt_text=PROMPT))  # a shared-prompt group
        reqs.append(shop_request(r, prompt_text=HTML + f" step {i}"))  # unrelated prompts
        reqs.append(shop_request(r, kind="kl_to_uniform", temperature=0.6, prompt_text=PROMPT))
    reqs.append(shop_request(RATIONALES[1]))  # no prompt
    reqs.append(shop_request(RATIONALES[2]))  # no prompt, grouped with the one before
    return reqs


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"pack_tokens": 40},  # groups split over documents and packs
        {"pack_tokens": 1},  # every document a pack of its own
        {"attention": "flex", "pack_tokens": 300},  # eager FlexAttention on CPU
    ],
    ids=["one-pack", "small-packs", "one-per-pack", "flex"],
)
def test_packed_values_match_the_reference(tiny_model, tiny_tokenizer, tiny_backend, options,
                                           monkeypatch):
    monkeypatch.setattr(packed_attention, "_FLEX", _eager_flex())
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, chunk_rows=5, **options)
    reqs = _mixed()
    results, stats = backend.score_encoded([backend.encode(r) for r in reqs])
    for req, res in zip(reqs, results, strict=True):
        assert res.reason is None and res.value is not None
        assert res.value == pytest.approx(reference_value(tiny_backend, req), rel=1e-4)
    if options.get("pack_tokens") == 1:
        # Every completion is a document (its prompt repeated) and a pack of its own.
        assert stats.extra["forwards"] == len(reqs)
    if not options:  # small documents: all in one pack of the CPU budget
        assert stats.extra["forwards"] == 1.0


def test_warmup_checks_the_packed_forward(tiny_model, tiny_tokenizer, monkeypatch):
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer)
    backend.warmup()

    def broken(self, q, k, v, scale):  # a kernel that ignores the documents' boundaries
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scale, enable_gqa=True
        ).transpose(1, 2)

    monkeypatch.setattr(PackLayout, "attend", broken)
    from reward_server.certainty import ModelLoadError

    with pytest.raises(ModelLoadError, match="packed forward"):
        backend.warmup()


def test_the_model_is_unchanged_outside_packed_calls(tiny_model, tiny_tokenizer):
    """Installing the packed attention keeps the model's ordinary forward: SDPA with
    transformers' own causal mask, the same logits as an untouched copy."""
    import copy

    untouched = copy.deepcopy(tiny_model)
    untouched.config._attn_implementation = "sdpa"
    TransformersBackend.from_model(tiny_model, tiny_tokenizer)
    assert tiny_model.config._attn_implementation == packed_attention.ATTENTION_NAME
    ids = torch.tensor([[5, 9, 40, 2, 77, 31]])
    with torch.inference_mode():
        assert torch.equal(tiny_model(input_ids=ids).logits, untouched(input_ids=ids).logits)


@pytest.mark.slow
@needs_cxx
def test_compiled_flex_attention_follows_the_block_lists():
    """The compiled FlexAttention kernel (what CUDA runs; here its CPU build) computes only
    the listed blocks: with a pack's block mask it gives the dense-mask reference, and with
    the partial blocks taken away it does not (so the lists are really used). One compiled
    graph serves packs of every length and structure (no recompilation per batch)."""
    from torch._dynamo.utils import counters
    from torch.nn.attention.flex_attention import BlockMask

    compiled = packed_attention.compiled_flex_attention()
    graphs = None
    rng = random.Random(5)
    for trial in range(3):
        pack = Pack()
        pack.add_document([1] * 150, [(0, item((1,) * 150, 40)), (1, item((1,) * 150, 70))])
        for d in range(trial):
            prompt = [2 + d] * rng.choice([20, 90, 200])
            pack.add_document(prompt, [(2 + d, item(tuple(prompt), rng.choice([5, 30])))])
        pack.add_document([], [(9, item((), 60)), (10, item((), 20))])
        layout = PackLayout(pack, "flex", torch.device("cpu"))
        length = layout.length
        assert length // packed_attention.BLOCK >= 3
        gen = torch.Generator().manual_seed(trial)
        q = torch.randn(1, 4, length, 16, generator=gen)
        k = torch.randn(1, 2, length, 16, generator=gen)
        v = torch.randn(1, 2, length, 16, generator=gen)
        got = compiled(q, k, v, block_mask=layout.block_mask, scale=0.25, enable_gqa=True)
        want = dense_attention(q, k, v, dense_allowed(pack, length), 0.25).transpose(1, 2)
        real = slice(0, pack.length)
        assert torch.allclose(got[:, :, real], want[:, :, real], atol=1e-4)
        if graphs is None:
            bm = layout.block_mask
            assert bm.full_kv_num_blocks.sum() > 0
            only_full = BlockMask.from_kv_blocks(
                torch.zeros_like(bm.kv_num_blocks), bm.kv_indices, bm.full_kv_num_blocks,
                bm.full_kv_indices, BLOCK_SIZE=packed_attention.BLOCK, mask_mod=bm.mask_mod,
                seq_lengths=(length, length),
            )
            wrong = compiled(q, k, v, block_mask=only_full, scale=0.25, enable_gqa=True)
            assert not torch.allclose(wrong[:, :, real], want[:, :, real], atol=1e-2)
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
@needs_cxx
def test_warmup_compiles_the_flex_graph_every_pack_uses(tiny_model, tiny_tokenizer):
    """The warm-up's pack compiles the FlexAttention graph that packs of every length use
    (its CPU build here; CUDA compiles the same graph). The compiler specialises a size of
    1: a one-block warm-up pack would compile a graph for one block only, and the first
    real pack would compile again (a second compile per model shape, in the first request
    or the timed run, and half of dynamo's 8 graphs used by four shapes)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # no graph left by an earlier test for this model's heads
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, attention="flex")
    backend.warmup()
    assert backend.attention == "flex"
    graphs = counters["stats"]["unique_graphs"]
    reqs = _mixed()
    many, stats = backend.score_encoded([backend.encode(r) for r in reqs * 3])
    assert stats.extra["forwards"] == 1.0
    assert packed_attention.padded_length(int(stats.tokens), "flex") >= 4 * packed_attention.BLOCK
    one = backend.score_batch(reqs[-1:])
    assert counters["stats"]["unique_graphs"] == graphs
    # Still the reference values (the graph is not a stale one).
    want = [r.value for r in TransformersBackend.from_model(tiny_model, tiny_tokenizer)
            .score_batch(reqs * 3)]
    assert [r.value for r in many] == pytest.approx(want, rel=1e-4)
    assert one[0].value == pytest.approx(want[len(reqs) - 1], rel=1e-4)


@pytest.mark.slow
@needs_cxx
def test_flex_attention_never_runs_uncompiled():
    """Where dynamo cannot compile a call (here: its limit of graphs per function, set to
    one), the kernel raises rather than running FlexAttention uncompiled, which would
    materialise every head's ``L x L`` scores while the backend still says ``flex``."""
    from torch._dynamo.exc import FailOnRecompileLimitHit

    pack = Pack()
    pack.add_document([1] * 150, [(0, item((1,) * 150, 40))])
    layout = PackLayout(pack, "flex", torch.device("cpu"))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1):
        compiled = packed_attention.compiled_flex_attention()
        for heads in (4, 8):  # the number of heads is static: a second graph
            q = torch.randn(1, heads, layout.length, 16)
            k = torch.randn(1, 2, layout.length, 16)
            if heads == 4:
                compiled(q, k, k, block_mask=layout.block_mask, scale=0.25, enable_gqa=True)
                continue
            with pytest.raises(FailOnRecompileLimitHit):
                compiled(q, k, k, block_mask=layout.block_mask, scale=0.25, enable_gqa=True)
    torch._dynamo.reset()


def test_bfloat16_packs_stay_within_bfloat16_rounding(tiny_model, tiny_tokenizer, tiny_backend):
    """The GPU's number format on CPU: bfloat16 weights and activations, float32
    reductions. Packed values are the float32 reference within bfloat16 rounding (2^-9
    relative per stored value, through two layers), and do not depend on the pack."""
    import copy

    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    backend = TransformersBackend.from_model(model, tiny_tokenizer, name="tiny-bf16")
    backend.warmup()
    reqs = _mixed()
    packed = [r.value for r in backend.score_batch(reqs)]
    small = TransformersBackend.from_model(model, tiny_tokenizer, pack_tokens=40)
    split = [r.value for r in small.score_batch(reqs)]
    for req, p, s in zip(reqs, packed, split, strict=True):
        want = reference_value(tiny_backend, req)
        assert p == pytest.approx(want, rel=1e-2)
        assert s == pytest.approx(p, rel=5e-3)


def test_a_flex_kernel_that_fails_falls_back_to_sdpa_blocks(tiny_model, tiny_tokenizer,
                                                             tiny_backend, monkeypatch, caplog):
    """Where FlexAttention cannot run (no compiler for the device), warm-up says so and
    packs with ``sdpa_blocks``; the values stay the reference's."""

    def no_compiler():
        raise RuntimeError("no C++ compiler for the inductor backend")

    monkeypatch.setattr(packed_attention, "compiled_flex_attention", no_compiler)
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, attention="flex")
    with caplog.at_level("WARNING"):
        backend.warmup()
    assert backend.attention == "sdpa_blocks"
    assert "FlexAttention failed (RuntimeError: no C++ compiler" in caplog.text
    reqs = [shop_request(prompt_text=PROMPT), shop_request(prompt_text=HTML)]
    got = [r.value for r in backend.score_batch(reqs)]
    assert got == pytest.approx([r.value for r in tiny_backend.score_batch(reqs)], rel=1e-5)
