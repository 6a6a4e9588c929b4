"""Rationale character span -> completion token positions (REWARD_CONTRACT.md §4).

A completion token counts as a rationale token when its character span ``[a, b)`` in the
completion text overlaps the rationale's span ``[start, end)``: ``a < end and b > start``
(zero-width tokens never overlap). Example: tokens ``'{"', 'rationale', '":', ' "', 'I',
' want', '",'`` with the rationale value ``I want`` selects the tokens ``I`` and ``want``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The overlap rule is the contract's, shared with the trainers' own self-certainty.
from reward_contract.certainty import overlapping_positions

__all__ = ["encode_with_offsets", "offsets_by_decoding", "overlapping_positions"]


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` (no special tokens) and each token's character span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def offsets_by_decoding(
    tokenizer: Any, ids: Sequence[int], stop_at: int | None = None, window: int = 16
) -> tuple[str, list[tuple[int, int]]]:
    """Character spans of given token ids, found by decoding them token by token.

    Linear: each step decodes a window of at most ``window`` recent tokens and takes what
    it adds to the already settled text (the way streaming detokenisers work), so a
    tokenizer that strips a leading space at the start of a decode strips it on both
    sides of the difference. A token holding only part of a multi-byte character decodes
    to U+FFFD; such a run of tokens (at most ``window``) is settled by the token that
    completes the character. As in a tokenizer's own offsets, a token spans the characters
    it holds bytes of: from the first character not complete before it to the end of the
    last one it touches. Decoding stops once ``stop_at`` characters are known; the tokens
    after that get zero-width spans at the end of the returned text.

    Returns the text decoded so far and one span per id. Raises ``ValueError`` when more
    tokens change text that was already settled (the ids cannot be decoded incrementally).
    """

    def dec(part: Sequence[int]) -> str:
        return tokenizer.decode(
            list(part), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    pieces: list[str] = []
    offsets: list[tuple[int, int]] = []
    emitted = 0  # characters settled so far
    start = read = 0  # decode window start; tokens before ``read`` are settled
    settled = ""  # dec(ids[start:read])
    complete: list[int] = []  # per pending token: characters complete after it
    for i in range(len(ids)):
        if stop_at is not None and emitted >= stop_at:
            break
        current = dec(ids[start : i + 1])
        if current.endswith("\ufffd") and i + 1 - read < window:
            # An incomplete character: wait for the token that completes it.
            complete.append(max(0, len(current.rstrip("\ufffd")) - len(settled)))
            continue
        if not current.startswith(settled):
            raise ValueError("the token ids do not decode incrementally")
        piece = current[len(settled) :]
        done = [min(c, len(piece)) for c in complete]
        before = 0
        for c in done:  # pending tokens: from what was complete before them to the end
            offsets.append((emitted + before, emitted + len(piece)))
            before = max(before, c)
        offsets.append((emitted + min(before, len(piece)), emitted + len(piece)))
        pieces.append(piece)
        emitted += len(piece)
        start, read, complete = read, i + 1, []
        settled = dec(ids[start:read])
    offsets.extend([(emitted, emitted)] * (len(ids) - len(offsets)))
    return "".join(pieces), offsets
