"""The vLLM backend's own logic without vLLM (runs in the default suite).

``VllmBackend`` gets hidden states from vLLM's pooling runner, which returns only the
positions it computed (the tail after a prefix-cache hit). Here a stand-in engine runs a
tiny random Llama with transformers and imitates vLLM's block prefix cache (16-token
blocks, whole blocks of an earlier sequence's prefix, never the last token), so the
offset bookkeeping, the two-step prompt sharing, the uncached re-run and the failure
isolation are checked against the transformers backend on the same model
(REWARD_CONTRACT.md §4). The real engine is compared in ``test_vllm_backend.py`` (``-m vllm``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "certainty"))

from certainty_helpers import make_tiny_model, make_tokenizer, shop_request  # noqa: E402

from reward_server.certainty import ModelLoadError, build_scorer  # noqa: E402
from reward_server.certainty.transformers_backend import TransformersBackend  # noqa: E402
from reward_server.certainty.types import CertaintyRequest  # noqa: E402
from reward_server.certainty.vllm_backend import VllmBackend  # noqa: E402

BLOCK = 16


class FakeEngineBackend(VllmBackend):
    """VllmBackend whose engine call is a transformers forward with a block prefix cache."""

    def __init__(self, model, tokenizer, fail_on: int | None = None) -> None:
        super().__init__(None, tokenizer, model.lm_head.weight.detach(), name="fake",
                         max_positions=256)
        self.model = model
        self.cache: set[tuple[int, ...]] = set()
        self.calls: list[int] = []
        self.fail_on = fail_on

    def _hidden_states(self, sequences, read_cache):
        self.calls.append(len(sequences))
        if self.fail_on is not None and any(self.fail_on in s for s in sequences):
            raise RuntimeError("engine failure")
        out = []
        for s in sequences:
            hit = 0
            if read_cache:
                while hit + BLOCK <= len(s) - 1 and tuple(s[: hit + BLOCK]) in self.cache:
                    hit += BLOCK
            with torch.inference_mode():
                h = self.model.base_model(input_ids=torch.tensor([s])).last_hidden_state[0]
            out.append(h[hit:])
        for s in sequences:  # blocks become cached once computed (after the step)
            for end in range(BLOCK, len(s) + 1, BLOCK):
                self.cache.add(tuple(s[:end]))
        return out


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer()
    model = make_tiny_model(3, vocab_size=len(tok) + 13)
    return model, tok, TransformersBackend.from_model(model, tok, name="tiny")


def _requests():
    prompt = tuple(range(40, 40 + 2 * BLOCK))  # block-aligned shared prompt
    sentence = "I want a graphics card."
    return [
        shop_request(prompt_ids=prompt),
        shop_request("A cheap card is fine for me.", prompt_ids=prompt, kind="kl_to_uniform",
                     temperature=0.7),
        # rationale at completion token 0: its row is the prompt's last (cached) position
        CertaintyRequest(sentence, (0, len(sentence)), prompt_ids=prompt),
        shop_request("Another prompt entirely.", prompt_text="Find a card.\n", temperature=1.5),
        shop_request("No prompt here at all."),
        CertaintyRequest("{}", (0, 0), prompt_text="x"),  # empty span
    ]


def test_matches_transformers_with_prefix_cache(tiny):
    model, tok, tb = tiny
    fake = FakeEngineBackend(model, tok)
    reqs = _requests()
    want = tb.score_batch(reqs)
    got = fake.score_batch(reqs)
    assert fake.calls[:2] == [3, 2]  # one item per prompt group first, then the others
    assert fake.last_cached_tokens >= 2 * BLOCK * 2
    assert fake.last_rerun_items == 1
    for g, w in zip(got, want, strict=True):
        assert g.reason == w.reason and g.approximate is False
        if w.value is not None:
            assert g.rationale_tokens == w.rationale_tokens
            assert g.value == pytest.approx(w.value, rel=1e-5)
    alone = [fake.score_batch([r])[0].value for r in reqs[:3]]
    assert alone == pytest.approx([g.value for g in got[:3]], rel=1e-5)


def test_no_sharing_reads_no_cache(tiny):
    model, tok, tb = tiny
    fake = FakeEngineBackend(model, tok)
    fake.share_prompts = False
    reqs = _requests()[:3]
    got = fake.score_batch(reqs)
    assert fake.last_cached_tokens == 0 and fake.calls[:1] == [3]
    for g, w in zip(got, tb.score_batch(reqs), strict=True):
        assert g.value == pytest.approx(w.value, rel=1e-5)


def test_engine_failure_is_isolated_per_item(tiny):
    model, tok, tb = tiny
    reqs = _requests()[3:5]
    poison = tb.encode(reqs[0]).prompt_ids[0]
    fake = FakeEngineBackend(model, tok, fail_on=poison)
    got = fake.score_batch(reqs)
    assert got[0].value is None and got[0].reason == "backend_error"
    assert got[1].value == pytest.approx(tb.score_batch(reqs[1:])[0].value, rel=1e-5)


def test_engine_selected_by_model_prefix(tmp_path):
    with pytest.raises(ModelLoadError):
        build_scorer("vllm:/does/not/exist")
    with pytest.raises(ModelLoadError):
        build_scorer("vllm:embedded", cache_dir=None)
    (tmp_path / "config.json").write_text("{}")
    scorer = build_scorer(f"vllm:{tmp_path}")
    assert scorer.model_name == f"vllm:{tmp_path}"
