"""Row reductions (REWARD_CONTRACT.md §4) and rationale span -> token positions."""

from __future__ import annotations

import math

import pytest
import torch
from certainty_helpers import reference_certainty
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_server.certainty.reductions import chunked_certainty, row_certainty
from reward_server.certainty.spans import (
    encode_with_offsets,
    offsets_by_decoding,
    overlapping_positions,
)


def test_worked_example_two_logits():
    # z = [0, log 3] -> p = [1/4, 3/4]; KL(U||p) = log 4 - log(3)/2 - log 2.
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert row_certainty(z, 1.0, "kl_uniform").item() == pytest.approx(
        math.log(4) - math.log(3) / 2 - math.log(2), rel=1e-6
    )
    # KL(p||U) = log 2 - H(p), H = -(1/4 log 1/4 + 3/4 log 3/4).
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert row_certainty(z, 1.0, "kl_to_uniform").item() == pytest.approx(math.log(2) - h, rel=1e-6)


def test_uniform_row_is_zero_and_temperature_divides():
    z = torch.full((3, 50), 7.0)
    for kind in ("kl_uniform", "kl_to_uniform"):
        assert row_certainty(z, 0.3, kind).abs().max().item() < 1e-5
    z = torch.randn(4, 100) * 3
    assert torch.allclose(
        row_certainty(z, 2.0, "kl_uniform"), row_certainty(z / 2, 1.0, "kl_uniform")
    )


def test_unknown_kind_rejected():
    with pytest.raises(ValueError):
        row_certainty(torch.zeros(1, 4), 1.0, "entropy")


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 9),
    width=st.integers(2, 300),
    scale=st.floats(0.1, 30.0),
    temp=st.floats(0.2, 3.0),
    chunk=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_chunked_matches_float64_reference(rows, width, scale, temp, chunk, seed):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, 8, generator=gen)
    weight = torch.randn(width, 8, generator=gen) * scale / 3

    def head(h: torch.Tensor) -> torch.Tensor:
        return h @ weight.T

    for kind in ("kl_uniform", "kl_to_uniform"):
        got = chunked_certainty(hidden, head, torch.full((rows,), temp), [kind] * rows, chunk)
        # reference_certainty scores token t with row t-1: positions 1..rows = rows 0..rows-1
        ref = reference_certainty(head(hidden), list(range(1, rows + 1)), temp, kind)
        assert float(got.double().mean()) == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_chunked_mixed_kinds_and_temperatures():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(7, 64, generator=gen) * 5
    temps = torch.tensor([1.0, 0.6, 2.0, 1.0, 0.6, 1.3, 0.9])
    kinds = ["kl_uniform", "kl_to_uniform"] * 3 + ["kl_uniform"]
    got = chunked_certainty(logits, lambda h: h, temps, kinds, chunk_rows=3)
    for i in range(7):
        want = row_certainty(logits[i : i + 1].double(), float(temps[i]), kinds[i]).item()
        assert got[i].item() == pytest.approx(want, rel=1e-5)


def test_overlap_rule():
    offsets = [(0, 2), (2, 11), (11, 14), (14, 15), (15, 16), (16, 21), (21, 23), (23, 23)]
    assert overlapping_positions(offsets, (15, 21)) == [4, 5]
    assert overlapping_positions(offsets, (14, 16)) == [3, 4]
    assert overlapping_positions(offsets, (20, 22)) == [5, 6]
    assert overlapping_positions(offsets, (5, 5)) == []  # empty span
    assert overlapping_positions(offsets, (23, 23)) == []  # zero-width tokens never count


@pytest.mark.parametrize(
    "text",
    [
        '{"rationale": "I want a café table ✓ now.", "action": {"type": "terminate"}}',
        "plain ascii words and  double  spaces\nand a newline",
        "日本語のテキスト and emoji 🛒 mixed",
    ],
)
def test_offsets_by_decoding_agree_with_tokenizer(tiny_tokenizer, text):
    ids, offsets = encode_with_offsets(tiny_tokenizer, text)
    decoded, derived = offsets_by_decoding(tiny_tokenizer, ids)
    assert decoded == text
    assert len(derived) == len(ids)
    # Same rationale tokens for every span of the text, whichever way offsets were found.
    for start in range(0, len(text), 3):
        for end in range(start + 1, len(text) + 1, 5):
            assert overlapping_positions(derived, (start, end)) == overlapping_positions(
                offsets, (start, end)
            ), (start, end)
