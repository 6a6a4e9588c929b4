"""Hostile and degenerate input: every per-item cost is linear and capped by the model
context before the work, input that can never succeed is a per-item ``invalid_request``
(never an exception that fails the batch), a value that overflows is never returned, and
a call that can never fit the queue is told so."""

from __future__ import annotations

import asyncio

import pytest
from certainty_helpers import PROMPT, shop_request

from reward_server.certainty import (
    ScorerError,
    ScorerOverloaded,
    ScorerRequestTooLarge,
    build_scorer,
)
from reward_server.certainty.spans import offsets_by_decoding, overlapping_positions
from reward_server.certainty.transformers_backend import TransformersBackend
from reward_server.certainty.types import CertaintyRequest


class CountingTokenizer:
    """The tiny tokenizer, counting the token ids it decodes and the texts it encodes."""

    def __init__(self, inner):
        self.inner = inner
        self.decoded_ids = 0
        self.encoded_chars = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, text, *args, **kwargs):
        self.encoded_chars += len(text)
        return self.inner(text, *args, **kwargs)

    def decode(self, ids, *args, **kwargs):
        self.decoded_ids += len(ids)
        return self.inner.decode(ids, *args, **kwargs)


@pytest.fixture
def counting(tiny_model, tiny_tokenizer):
    tok = CountingTokenizer(tiny_tokenizer)
    return TransformersBackend.from_model(tiny_model, tok, name="tiny"), tok


def test_too_many_ids_are_too_long_before_any_decoding(counting, tiny_tokenizer):
    backend, tok = counting
    ids = tuple(tiny_tokenizer("I want a lamp.", add_special_tokens=False)["input_ids"])
    huge = ids * (16_000 // len(ids))  # far beyond the 256-token context
    base = shop_request()
    reqs = [
        CertaintyRequest(base.completion_text, base.rationale_span, completion_ids=huge),
        CertaintyRequest(base.completion_text, base.rationale_span, prompt_ids=huge),
        CertaintyRequest(
            base.completion_text, base.rationale_span, prompt_ids=ids * 20, completion_ids=huge
        ),
    ]
    out = [backend.encode(r) for r in reqs]
    assert [r.reason for r in out] == ["too_long"] * 3
    assert all(r.total_tokens > backend.max_positions for r in out)
    assert tok.decoded_ids == 0 and tok.encoded_chars == 0


def test_a_text_too_long_for_the_context_is_not_tokenised(counting):
    backend, tok = counting
    long_text = "lamp " * (backend.encoder.max_text_chars // 5 + 1)
    base = shop_request()
    for req in (
        CertaintyRequest(base.completion_text, base.rationale_span, prompt_text=long_text),
        CertaintyRequest(
            base.completion_text, base.rationale_span, prompt_messages=(("user", long_text),)
        ),
        CertaintyRequest(long_text, (0, 4)),
    ):
        assert backend.encode(req).reason == "too_long"
    assert tok.encoded_chars == 0


def test_decoding_given_completion_ids_is_linear(tiny_tokenizer):
    """Token-by-token decoding of n ids decodes O(n) ids in all (the former prefix-by-
    prefix decoding decoded n^2 / 2), and gives the tokenizer's own spans."""
    text = "I compare the lamps, then the café tables ✓, then the 🛒 cart. " * 8
    enc = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    tok = CountingTokenizer(tiny_tokenizer)
    decoded, offsets = offsets_by_decoding(tok, ids)
    assert decoded == text
    n = len(ids)
    assert n > 200 and tok.decoded_ids <= 40 * n < n * n / 2
    spans = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    for start in range(0, len(text), 7):
        span = (start, start + 9)
        assert overlapping_positions(offsets, span) == overlapping_positions(spans, span)
    # Stopping at a span end decodes only what the span needs.
    tok.decoded_ids = 0
    partial, _ = offsets_by_decoding(tok, ids, stop_at=20)
    assert len(partial) >= 20 and text.startswith(partial)
    assert tok.decoded_ids <= 40 * 20


def test_ids_outside_the_vocabulary_are_invalid_per_item(tiny_backend, tiny_tokenizer):
    base = shop_request(prompt_text=PROMPT)
    comp = tuple(tiny_tokenizer(base.completion_text, add_special_tokens=False)["input_ids"])
    bad_ids = [2**40, -1, tiny_backend.input_vocab, 2**63 + 5]
    reqs = []
    for bad in bad_ids:
        reqs.append(CertaintyRequest(base.completion_text, base.rationale_span,
                                     completion_ids=(*comp[:3], bad, *comp[4:])))
        reqs.append(CertaintyRequest(base.completion_text, base.rationale_span,
                                     prompt_ids=(5, bad)))
    reqs.append(CertaintyRequest(base.completion_text, base.rationale_span,
                                 completion_ids=(*comp[:2], 1.5, *comp[3:])))
    reqs.append(CertaintyRequest(base.completion_text, base.rationale_span,
                                 prompt_ids=("7",)))
    reqs.append(base)
    out = tiny_backend.score_batch(reqs)
    assert [r.reason for r in out[:-1]] == ["invalid_request"] * (len(reqs) - 1)
    assert "completion_ids[3]" in out[0].detail and "prompt_ids[1]" in out[1].detail
    assert "vocabulary" in out[0].detail
    assert "completion_ids[2]" in out[-3].detail and "integer" in out[-3].detail
    assert out[-1].value is not None  # the good item of the batch is scored


def test_text_that_is_not_unicode_is_invalid_per_item(tiny_backend):
    base = shop_request(prompt_text=PROMPT)
    lone = "Find a lamp \ud800 now."
    text_with = base.completion_text.replace("graphics", "gr\udfffaphics")
    reqs = [
        CertaintyRequest(base.completion_text, base.rationale_span, prompt_text=lone),
        CertaintyRequest(base.completion_text, base.rationale_span,
                         prompt_messages=(("user", lone),)),
        CertaintyRequest(text_with, base.rationale_span, prompt_text=PROMPT),
        base,
    ]
    out = tiny_backend.score_batch(reqs)
    assert [r.reason for r in out] == ["invalid_request"] * 3 + [None]
    assert "prompt_text" in out[0].detail and "Unicode" in out[0].detail
    assert "prompt_messages[0].content" in out[1].detail
    assert "completion_text" in out[2].detail
    assert out[3].value is not None


def test_a_value_that_overflows_is_not_returned(tiny_backend):
    reqs = [
        shop_request(prompt_text=PROMPT, temperature=1e-300),
        shop_request(prompt_text=PROMPT, kind="kl_to_uniform", temperature=1e-300),
        shop_request(prompt_text=PROMPT),
    ]
    out = tiny_backend.score_batch(reqs)
    assert [r.reason for r in out] == ["non_finite", "non_finite", None]
    assert out[0].value is None and out[1].value is None and out[2].value is not None
    assert "temperature" in out[0].detail


async def test_a_call_larger_than_the_queue_is_too_large_not_overloaded(
    tiny_model, tiny_tokenizer
):
    backend = TransformersBackend.from_model(tiny_model, tiny_tokenizer, name="tiny")
    scorer = build_scorer(model="tiny", loader=lambda _m: backend, max_queue_items=4,
                          max_wait_ms=0)
    await scorer.start()
    try:
        with pytest.raises(ScorerRequestTooLarge) as info:
            await scorer.score([shop_request(prompt_text=PROMPT)] * 5)
        assert isinstance(info.value, ScorerError)
        assert not isinstance(info.value, ScorerOverloaded)
        assert info.value.limit == 4
        # Exactly the limit fits, and the scorer is unharmed.
        results = await asyncio.wait_for(scorer.score([shop_request(prompt_text=PROMPT)] * 4), 60)
        assert all(r.value is not None for r in results)
    finally:
        await scorer.stop()
