"""The two torch reductions of REWARD_CONTRACT.md §4 give the same values: the service's
(``reward_server.certainty.reductions``) and the trainers' (``trainer_adapter.certainty``),
which may not import the service's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from reward_contract.certainty import CERTAINTY_KINDS  # noqa: E402
from reward_server.certainty.reductions import row_certainty  # noqa: E402
from trainer_adapter.certainty import self_certainty  # noqa: E402


@pytest.mark.parametrize("kind", CERTAINTY_KINDS)
@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
def test_service_and_trainer_reductions_agree(kind, temperature) -> None:
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 6, 257, generator=generator) * 4
    mask = torch.rand(3, 6, generator=generator) > 0.3
    mask[:, 1] = True
    trainer = self_certainty(logits, mask, temperature=temperature, kind=kind, chunk_rows=4)
    for row in range(3):
        rows = logits[row][mask[row]]
        service = row_certainty(rows, temperature, kind).double().mean()
        torch.testing.assert_close(trainer[row].double(), service, rtol=1e-5, atol=1e-5)
