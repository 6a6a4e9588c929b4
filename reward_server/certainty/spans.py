"""Rationale character span -> completion token positions (REWARD_SPEC section 4).

A completion token counts as a rationale token when its character span ``[a, b)`` in the
completion text overlaps the rationale's span ``[start, end)``: ``a < end and b > start``
(zero-width tokens never overlap). Example: tokens ``'{"', 'rationale', '":', ' "', 'I',
' want', '",'`` with the rationale value ``I want`` selects the tokens ``I`` and ``want``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def overlapping_positions(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens whose ``[a, b)`` overlaps ``[start, end)``."""
    start, end = span
    if end <= start:
        return []
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` (no special tokens) and each token's character span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def offsets_by_decoding(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Character spans of given token ids, found by decoding growing prefixes.

    Token ``i`` spans ``[len(decode(ids[:i])), len(decode(ids[:i+1])))``. A token holding
    only part of a multi-byte character decodes to a replacement character until the
    character completes, so prefix lengths are made monotone: such a token gets the span
    that its completed character ends up at. Returns the full decoded text and the spans.
    Costs O(n^2) decoding, fine for completions of a few hundred tokens.
    """

    def dec(part: Sequence[int]) -> str:
        return tokenizer.decode(
            list(part), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    full = dec(ids)
    ends: list[int] = []
    for i in range(1, len(ids) + 1):
        prefix = dec(ids[:i])
        # A prefix that ends mid-character decodes to U+FFFD, which is not a prefix of the
        # full text; count it as not yet advanced (the next token completes it).
        n = len(prefix)
        while n > 0 and not full.startswith(prefix[:n]):
            n -= 1
        ends.append(n)
    for i in range(len(ends) - 2, -1, -1):
        ends[i] = min(ends[i], ends[i + 1])
    offsets: list[tuple[int, int]] = []
    prev = 0
    pending = 0  # tokens so far that hold only part of a character
    for end in ends:
        if end == prev:
            pending += 1
            offsets.append((prev, prev))
            continue
        # Tokens holding bytes of a character get the span of the token completing it.
        for j in range(len(offsets) - pending, len(offsets)):
            offsets[j] = (prev, end)
        pending = 0
        offsets.append((prev, end))
        prev = end
    return full, offsets
