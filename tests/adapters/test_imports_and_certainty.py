"""The client and adapters stay light (no torch, no fastapi, no server internals), and the
torch self-certainty helper matches the REWARD_CONTRACT.md §4 formulas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_client_and_adapters_import_neither_torch_nor_fastapi():
    code = (
        "import sys, client, trainer_adapter, trainer_adapter.openrlhf, trainer_adapter.verl, "
        "trainer_adapter.trl, trainer_adapter.slime\n"
        "heavy = [m for m in ('torch', 'fastapi', 'transformers', 'reward_server', 'uvicorn')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_openrlhf_returns_lists_without_torch(rules_server):
    """Outside a torch process the OpenRLHF function returns plain lists (and still works)."""
    code = (
        "import json, sys, os\n"
        "from trainer_adapter.openrlhf import reward_func\n"
        "a = json.dumps({'rationale': 'done', 'action': {'type': 'terminate'}})\n"
        "out = reward_func(['P' + a], ['P'], [json.dumps({'type': 'terminate'})])\n"
        "assert out['rewards'] == [0.8], out\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {"SHOP_R1_REWARD_URL": rules_server.url, "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60, env=env)


torch = pytest.importorskip("torch")

from trainer_adapter.certainty import (  # noqa: E402
    rationale_char_span,
    rationale_token_mask,
    self_certainty,
)


def naive(logits, mask, temperature, kind):
    log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
    width = logits.shape[-1]
    if kind == "kl_uniform":  # KL(U || p) = -mean(log p) - log V
        per = -log_probs.mean(-1) - math.log(width)
    else:  # KL(p || U) = log V - H(p)
        per = math.log(width) + (log_probs.exp() * log_probs).sum(-1)
    mask = mask.double()
    return (per * mask).sum(1) / mask.sum(1)


@pytest.mark.parametrize("kind", ["kl_uniform", "kl_to_uniform"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_self_certainty_matches_the_formulas(kind, dtype):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 9, 301, generator=generator) * 3).to(dtype)
    mask = torch.rand(4, 9, generator=generator) > 0.4
    mask[:, 0] = True
    got = self_certainty(logits, mask, temperature=0.6, kind=kind, chunk_rows=5)
    assert got.dtype == torch.float32 and got.shape == (4,)
    torch.testing.assert_close(got.double(), naive(logits, mask, 0.6, kind), rtol=1e-5, atol=1e-5)
    # chunking does not change the result
    whole = self_certainty(logits, mask, temperature=0.6, kind=kind, chunk_rows=10_000)
    torch.testing.assert_close(got, whole)


def test_self_certainty_row_without_rationale_is_nan_not_zero():
    logits = torch.randn(2, 3, 11)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    got = self_certainty(logits, mask)
    assert math.isfinite(got[0].item()) and math.isnan(got[1].item())
    with pytest.raises(ValueError):
        self_certainty(logits, mask[:, :2])


def test_rationale_span_and_token_mask():
    completion = '  {"action": {"type": "terminate"}, "rationale": "I \\"leave\\" now"}'
    start, end = rationale_char_span(completion)
    assert json.loads('"' + completion[start:end] + '"') == 'I "leave" now'
    assert rationale_char_span("not json") is None
    assert rationale_char_span('{"rationale": 3, "action": {}}') is None
    offsets = [(0, start), (start, start + 2), (end - 1, end + 2), (end + 2, end + 3)]
    assert rationale_token_mask(offsets, (start, end)) == [False, True, True, False]


def test_provided_self_certainty_reaches_the_reward(rules_server):
    """A trainer-computed value sent as ``provided`` adds alpha * s (REWARD_CONTRACT.md §4-5)."""
    from client import RewardClient

    logits = torch.randn(1, 4, 50)
    value = self_certainty(logits, torch.ones(1, 4, dtype=torch.bool)).item()
    item = {
        "completion": json.dumps({"rationale": "done", "action": {"type": "terminate"}}),
        "ground_truth": {"type": "terminate"},
        "self_certainty": value,
    }
    with RewardClient(rules_server.url) as client:
        result = client.score([item], self_certainty_source="provided")[0]
    assert result.components.self_certainty == pytest.approx(value)
    assert result.reward == pytest.approx(0.8 + 0.005 * value)


def test_adapter_settings_come_from_the_environment_and_name_bad_variables(monkeypatch):
    from trainer_adapter import AdapterSettings

    monkeypatch.setenv("SHOP_R1_REWARD_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SHOP_R1_REWARD_CONFIG", '{"temperature": 0.6}')
    monkeypatch.setenv("SHOP_R1_REWARD_TIMEOUT", "")  # empty counts as unset
    settings = AdapterSettings.from_env()
    assert settings.reward_url == "http://127.0.0.1:9" and settings.reward_timeout == 120.0
    assert settings.score_kwargs()["config"] == {"temperature": 0.6}
    assert AdapterSettings.from_env() is settings  # built once per distinct environment
    monkeypatch.setenv("SHOP_R1_REWARD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SHOP_R1_REWARD_TIMEOUT"):
        AdapterSettings.from_env()
    monkeypatch.setenv("SHOP_R1_REWARD_TIMEOUT", "30")
    monkeypatch.setenv("SHOP_R1_REWARD_CONFIG", "[1]")
    with pytest.raises(ValueError, match=r"SHOP_R1_REWARD_CONFIG: .*JSON object"):
        AdapterSettings.from_env()
    monkeypatch.setenv("SHOP_R1_REWARD_CONFIG", "{}")
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "oracle")
    with pytest.raises(ValueError, match="SHOP_R1_SELF_CERTAINTY_SOURCE"):
        AdapterSettings.from_env()


def test_reward_config_is_parsed_once_and_a_changed_one_takes_effect(rules_server, monkeypatch):
    """Adapters read the settings on every call (thousands per step): an unchanged
    SHOP_R1_REWARD_CONFIG is not parsed again, a changed one reaches the next request."""
    import asyncio

    from trainer_adapter import AdapterSettings
    from trainer_adapter.trl import shop_r1_reward

    answer = json.dumps({"rationale": "done", "action": {"type": "terminate"}})
    truth = {"type": "terminate"}
    monkeypatch.setenv("SHOP_R1_REWARD_URL", rules_server.url)
    monkeypatch.setenv("SHOP_R1_SELF_CERTAINTY_SOURCE", "none")
    monkeypatch.setenv("SHOP_R1_REWARD_CONFIG", '{"type_weight": 0.3}')
    parsed = AdapterSettings.from_env().score_kwargs()["config"]
    for _ in range(3):  # the same parse each call, never a new one
        assert AdapterSettings.from_env().score_kwargs()["config"] is parsed
    assert parsed == {"type_weight": 0.3}
    with pytest.raises(TypeError):  # shared by every call, so nobody may change it
        parsed["type_weight"] = 1.0  # type: ignore[index]
    assert asyncio.run(shop_r1_reward(completions=[answer], ground_truth=[truth])) == [
        pytest.approx(0.8)
    ]
    monkeypatch.setenv("SHOP_R1_REWARD_CONFIG", '{"type_weight": 0.5}')
    assert AdapterSettings.from_env().score_kwargs()["config"] == {"type_weight": 0.5}
    assert asyncio.run(shop_r1_reward(completions=[answer], ground_truth=[truth])) == [
        pytest.approx(1.0)
    ]
