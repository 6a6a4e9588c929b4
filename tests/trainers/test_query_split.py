"""``split_query`` on queries built the way OpenRLHF builds them: the prompt's token ids
cut from the left at every possible point, then decoded together with the response's,
special tokens kept (SmolLM2's byte-level tokenizer: a cut inside a multi-byte character
decodes to U+FFFD)."""

from __future__ import annotations

import json

import pytest

from reward_contract import strip_end_markers
from reward_contract.query import split_query

ANSWER = json.dumps({"rationale": "Die Größe passt 💡", "action": {"type": "terminate"}})


@pytest.mark.slow  # reads the tokenizer from the model file
def test_every_left_cut_of_a_prompt_finds_the_response(smollm2_tokenizer):
    messages = [
        {"role": "system", "content": "Du bist ein Käufer. 買い物をします 🛒 " * 6},
        {"role": "user", "content": "Seite: <a name='Größe'>Größe wählen 💡</a> " * 8},
    ]
    prompt = smollm2_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    prompt_ids = smollm2_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = smollm2_tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    answer_ids += [smollm2_tokenizer.eos_token_id]
    damaged = 0
    for kept in range(12, len(prompt_ids) + 1):
        query = smollm2_tokenizer.decode(prompt_ids[-kept:] + answer_ids, skip_special_tokens=False)
        split = split_query(query, prompt)
        assert split is not None, kept
        assert strip_end_markers(split.response) == ANSWER, kept
        assert split.truncated == (kept < len(prompt_ids))
        assert prompt.endswith(split.prompt) and len(split.prompt) > 0
        damaged += query.startswith("\ufffd")
    assert damaged > 0  # some cuts did split a character: the lead slack was needed


def test_no_prompt_in_the_query_and_degenerate_text_are_bounded():
    prompt = "<|im_start|>user\nfind a lamp<|im_end|>\n<|im_start|>assistant\n"
    assert split_query("a completely different text {}", prompt) is None
    # A periodic prompt tail: the tail occurs at every other character; the longest match
    # (the shortest response) is taken.
    repeated = split_query("ab" * 20 + "{}", "zz" + "ab" * 4000)
    assert repeated is not None and repeated.response == "{}" and repeated.truncated
    # The tail occurs about 2,000 times, never preceded by only the prompt's end: after
    # the capped number of checks the answer is "not found", not a check of every one.
    assert split_query("xyz" * 100 + "ab!" * 3000 + "{}", "ab!" * 2000) is None
