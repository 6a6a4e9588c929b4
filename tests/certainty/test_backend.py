"""The transformers backend on a tiny random Llama: exactness, masking, alignment, batch
independence and per-item failures (REWARD_CONTRACT.md §4)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from certainty_helpers import (
    HTML,
    PROMPT,
    RATIONALES,
    make_tiny_model,
    reference_certainty,
    reference_value,
    shop_request,
)

from reward_server.certainty import ModelLoadError, build_scorer
from reward_server.certainty.transformers_backend import TransformersBackend
from reward_server.certainty.types import CertaintyRequest


def test_v_is_the_logits_width(tiny_backend, tiny_model, tiny_tokenizer):
    assert tiny_backend.vocab_size == tiny_model.config.vocab_size == len(tiny_tokenizer) + 13


@pytest.mark.parametrize("kind", ["kl_uniform", "kl_to_uniform"])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
def test_exact_against_float64_reference(tiny_backend, kind, temperature):
    reqs = [
        shop_request(r, prompt_text=PROMPT, kind=kind, temperature=temperature) for r in RATIONALES
    ]
    results = tiny_backend.score_batch(reqs)
    for req, res in zip(reqs, results, strict=True):
        assert res.reason is None and res.value is not None
        assert res.rationale_tokens > 0
        assert res.value == pytest.approx(reference_value(tiny_backend, req), rel=1e-4)


def test_prompt_forms_agree(tiny_backend, tiny_tokenizer):
    messages = (("user", "Find a graphics card."),)
    templated = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Find a graphics card."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = tuple(tiny_tokenizer(templated, add_special_tokens=False)["input_ids"])
    base = shop_request()
    comp_ids = tuple(tiny_tokenizer(base.completion_text, add_special_tokens=False)["input_ids"])
    forms = [
        shop_request(prompt_messages=messages),
        shop_request(prompt_text=templated),
        shop_request(prompt_ids=ids),
        shop_request(prompt_ids=ids, completion_ids=comp_ids),
    ]
    values = [r.value for r in tiny_backend.score_batch(forms)]
    assert all(v is not None for v in values)
    assert max(values) - min(values) <= 1e-4 * abs(values[0])
    assert values[0] == pytest.approx(reference_value(tiny_backend, forms[0]), rel=1e-4)


def test_no_prompt_skips_the_first_token(tiny_backend, tiny_tokenizer):
    req = shop_request()
    res = tiny_backend.score_batch([req])[0]
    assert res.value == pytest.approx(reference_value(tiny_backend, req), rel=1e-4)
    # A rationale inside the very first token: that token has no predicting row.
    text = "hello shopper world"
    first = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    only_first = CertaintyRequest(text, rationale_span=tuple(first["offset_mapping"][0]))
    assert tiny_backend.score_batch([only_first])[0].reason == "empty_span"


def test_only_rationale_tokens_count(tiny_backend):
    """Changing the tokens after the rationale changes the distributions at those
    positions (and the full-sequence mean), never the value."""
    a = shop_request(prompt_text=PROMPT, action='{"type": "terminate"}')
    b = shop_request(
        prompt_text=PROMPT,
        action='{"type": "click", "name": "refinements.customer_reviews"}',
    )
    va, vb = (r.value for r in tiny_backend.score_batch([a, b]))
    assert va == pytest.approx(vb, rel=1e-5)
    # The test is not vacuous: over all completion tokens the two differ clearly.
    wide_a = CertaintyRequest(a.completion_text, (0, len(a.completion_text)), prompt_text=PROMPT)
    wide_b = CertaintyRequest(b.completion_text, (0, len(b.completion_text)), prompt_text=PROMPT)
    wa, wb = (r.value for r in tiny_backend.score_batch([wide_a, wide_b]))
    assert abs(wa - wb) > 1e-3 * abs(wa)
    # And the rationale value differs from the whole-completion value.
    assert abs(va - wa) > 1e-3 * abs(va)


def test_alignment_position_t_minus_1_scores_token_t(tiny_backend):
    """The value uses the row before each rationale token; shifting by one either way
    gives a clearly different number, so an off-by-one cannot pass the 1e-4 check."""
    for rationale in RATIONALES:
        req = shop_request(rationale, prompt_text=PROMPT)
        got = tiny_backend.score_batch([req])[0].value
        enc = tiny_backend.encode(req)
        ids = list(enc.prompt_ids) + enc.completion_ids
        with torch.inference_mode():
            full = tiny_backend.model(input_ids=torch.tensor([ids])).logits[0]
        pos = [len(enc.prompt_ids) + p for p in enc.positions]
        right = reference_certainty(full, pos, 1.0, "kl_uniform")
        shifted_late = reference_certainty(full, [p + 1 for p in pos], 1.0, "kl_uniform")
        shifted_early = reference_certainty(full, [p - 1 for p in pos], 1.0, "kl_uniform")
        assert got == pytest.approx(right, rel=1e-4)
        assert abs(got - shifted_late) > 1e-3 * abs(right)
        assert abs(got - shifted_early) > 1e-3 * abs(right)


def _mixed_requests():
    reqs = []
    for i, r in enumerate(RATIONALES):
        reqs.append(shop_request(r, prompt_text=PROMPT))  # shared prompt group
        reqs.append(shop_request(r, prompt_text=HTML + f" step {i}"))  # unrelated prompts
        reqs.append(shop_request(r, kind="kl_to_uniform", temperature=0.6, prompt_text=PROMPT))
    reqs.append(shop_request(RATIONALES[0]))  # no prompt
    return reqs


def test_value_does_not_depend_on_batch_mates(tiny_model, tiny_tokenizer, tiny_backend):
    reqs = _mixed_requests()
    alone = [tiny_backend.score_batch([r])[0].value for r in reqs]
    mixed = [r.value for r in tiny_backend.score_batch(reqs)]
    group = [r.value for r in tiny_backend.score_batch([reqs[0]] * 8)]
    # Small packs and reduction chunks: groups split over documents and forwards.
    small = TransformersBackend.from_model(
        tiny_model, tiny_tokenizer, pack_tokens=20, chunk_rows=3
    )
    split = [r.value for r in small.score_batch(reqs)]
    for a, m, s in zip(alone, mixed, split, strict=True):
        assert m == pytest.approx(a, rel=1e-4)
        assert s == pytest.approx(a, rel=1e-4)
    assert all(g == pytest.approx(alone[0], rel=1e-4) for g in group)


def test_too_long_is_a_per_item_result(tiny_backend):
    long_prompt = "word " * 400  # the tiny model has 256 positions
    reqs = [shop_request(prompt_text=long_prompt), shop_request(prompt_text=PROMPT)]
    too_long, fine = tiny_backend.score_batch(reqs)
    assert too_long.value is None and too_long.reason == "too_long"
    assert too_long.total_tokens > tiny_backend.max_positions
    assert fine.value is not None


def test_empty_span_and_invalid_items(tiny_backend, tiny_tokenizer):
    base = shop_request(prompt_text=PROMPT)
    start = base.rationale_span[0]
    reqs = [
        CertaintyRequest(base.completion_text, (start, start), prompt_text=PROMPT),
        CertaintyRequest(base.completion_text, (5, 10_000), prompt_text=PROMPT),
        CertaintyRequest(base.completion_text, base.rationale_span, prompt_ids=(10**7,)),
        CertaintyRequest(
            base.completion_text, base.rationale_span, prompt_text=PROMPT, prompt_ids=(1, 2)
        ),
        CertaintyRequest(base.completion_text, base.rationale_span, temperature=0.0),
        CertaintyRequest(
            base.completion_text,
            base.rationale_span,
            completion_ids=tuple(
                tiny_tokenizer("something else", add_special_tokens=False)["input_ids"]
            ),
        ),
        base,
    ]
    out = tiny_backend.score_batch(reqs)
    assert [r.reason for r in out] == [
        "empty_span",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "span_mismatch",
        None,
    ]
    assert all(r.value is None for r in out[:-1]) and out[-1].value is not None


def test_group_failure_is_isolated(tiny_backend, monkeypatch):
    reqs = [shop_request(prompt_text=PROMPT), shop_request(prompt_text=HTML)]
    first = tiny_backend.encode(reqs[0])
    real = tiny_backend.body

    def failing(*args, **kwargs):
        # The HTML item's forward (same completion, longer prompt) runs out of memory.
        if kwargs["input_ids"].shape[1] > len(first.prompt_ids) + first.forward_tokens:
            raise RuntimeError("simulated out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_backend, "body", failing)
    ok, bad = tiny_backend.score_batch(reqs)
    assert ok.value is not None
    assert bad.value is None and bad.reason == "backend_error" and "out of memory" in bad.detail


def test_bad_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_scorer(model=str(tmp_path / "nope"), device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10}))
    with pytest.raises(ModelLoadError, match="cannot load"):
        TransformersBackend.from_pretrained(str(broken), device="cpu")


async def test_bad_model_dir_fails_start(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    scorer = build_scorer(model=str(broken), device="cpu")
    with pytest.raises(ModelLoadError):
        await scorer.start()
    assert not scorer.ready


def test_import_stays_light():
    code = (
        "import sys, reward_server.certainty, reward_server.certainty.types;"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_a_failed_pack_is_retried_document_by_document(tiny_model, tiny_tokenizer, monkeypatch):
    """Unrelated prompts share one pack; when it fails, each document is scored alone, so
    only the items of the document that also fails alone lose their value."""
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, name="tiny",
                                             pack_tokens=4096)
    reqs = [shop_request(prompt_text=PROMPT), shop_request(prompt_text=HTML)]
    want = [r.value for r in backend.score_batch(reqs)]
    short = backend.encode(reqs[0])
    real = backend.body
    calls: list[int] = []

    def failing(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[1])
        if kwargs["input_ids"].shape[1] > len(short.prompt_ids) + short.forward_tokens:
            raise RuntimeError("simulated out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(backend, "body", failing)
    ok, bad = backend.score_batch(reqs)
    assert len(calls) == 3  # the pack of both, then each document alone
    assert ok.value == pytest.approx(want[0], rel=1e-5)
    assert bad.value is None and bad.reason == "backend_error" and "out of memory" in bad.detail


def test_requests_that_can_never_be_scored_say_why(tiny_backend, tiny_tokenizer):
    base = shop_request()
    span = base.rationale_span
    many = tuple(tiny_tokenizer("word " * 300, add_special_tokens=False)["input_ids"])
    reqs = [
        CertaintyRequest(123, span),  # type: ignore[arg-type]
        CertaintyRequest(base.completion_text, span, kind="entropy"),  # type: ignore[arg-type]
        CertaintyRequest(base.completion_text, span, prompt_ids=many),
        CertaintyRequest(
            base.completion_text, span, prompt_text="word " * 25, completion_ids=many[:200]
        ),
        CertaintyRequest(base.completion_text + " " + "word " * 300, span, prompt_text="p"),
    ]
    out = tiny_backend.score_batch(reqs)
    assert [(r.value, r.reason) for r in out] == [
        (None, "invalid_request"), (None, "invalid_request"),
        (None, "too_long"), (None, "too_long"), (None, "too_long"),
    ]
    assert "completion_text must be a string" in out[0].detail
    assert "unknown certainty kind 'entropy'" in out[1].detail
    assert all(r.total_tokens > tiny_backend.max_positions for r in out[2:])


def test_close_lets_the_weights_go(tiny_tokenizer):
    """After close() the backend holds no weight (the output head included: a tied
    embedding is the largest tensor of a small model), so a reload frees the old model."""
    import gc
    import weakref

    model = make_tiny_model(3, vocab_size=len(tiny_tokenizer) + 13)
    backend = TransformersBackend.from_model(model, tiny_tokenizer, name="closing")
    head_weight = weakref.ref(model.get_output_embeddings().weight)
    del model
    backend.close()
    gc.collect()
    assert head_weight() is None
