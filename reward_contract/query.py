"""Where the response starts in a trainer's ``query`` (prompt + response decoded as one text).

OpenRLHF sends the decoded prompt and response as one string, and the prompt separately.
When the prompt is longer than the trainer's budget it keeps only the prompt's last
tokens, so the query then starts with the *end* of the prompt, not the prompt. Decoding
a token list that was cut anywhere can also change its first characters: a multi-byte
character split between tokens becomes U+FFFD, and SentencePiece tokenizers drop the
leading space of the first token. Those are at most a few characters at the very start.

:func:`split_query` therefore finds the largest ``p`` such that ``query[j:p]`` is a suffix
of the prompt for some ``j <= LEAD_SLACK`` (the characters before ``j`` are that damage):
the response is ``query[p:]`` and ``query[j:p]`` the part of the prompt the policy saw.
Candidates for ``p`` are the ends of occurrences of the prompt's last characters
(``TAIL_CHARS``), tried from the right; each check is one slice comparison, at most
``MAX_CANDIDATES`` of them, so the cost is linear in the query and capped whatever the
text (a periodic, degenerate prompt tail cannot make it quadratic).
"""

from __future__ import annotations

from typing import NamedTuple

# Characters at the start of a decoded, left-truncated prompt that may differ from the
# prompt text (a split UTF-8 character: up to 3 bytes, each a U+FFFD; a dropped space).
LEAD_SLACK = 8
# Lengths of the prompt's tail searched for, longest first: long enough to be unique in
# real prompts (chat templates end with a distinctive assistant header); the shorter one
# only when the kept part of the prompt is shorter than the longer.
TAIL_CHARS = (64, 16)
# Occurrences of the tail checked, from the right, before giving up.
MAX_CANDIDATES = 16


class QuerySplit(NamedTuple):
    """``response`` and the ``prompt`` text it followed; ``truncated`` when that text is
    only the end of the prompt the trainer sent."""

    response: str
    prompt: str
    truncated: bool


def split_query(query: str, prompt: str) -> QuerySplit | None:
    """The response part of ``query``, or None when neither the prompt nor its end is there.

    >>> prompt = "<s>user: find a lamp\\nassistant: "
    >>> split_query(prompt + "{}", prompt)
    QuerySplit(response='{}', prompt='<s>user: find a lamp\\nassistant: ', truncated=False)
    >>> split_query("nd a lamp\\nassistant: {}", prompt)
    QuerySplit(response='{}', prompt='nd a lamp\\nassistant: ', truncated=True)
    """
    if query.startswith(prompt):
        return QuerySplit(query[len(prompt) :], prompt, False)
    # A kept part of the prompt is never longer than the prompt (plus the damaged lead).
    limit = min(len(query), len(prompt) + LEAD_SLACK)
    checked = 0
    for size in TAIL_CHARS:
        tail = prompt[-size:]
        end = limit
        while checked < MAX_CANDIDATES:
            found = query.rfind(tail, 0, end)
            if found < 0:
                break
            checked += 1
            stop = found + len(tail)
            lead = min(LEAD_SLACK, found)
            if prompt.endswith(query[lead:stop]):
                # The smallest lead that still matches keeps the most of the prompt.
                start = next(j for j in range(lead + 1) if prompt.endswith(query[j:stop]))
                return QuerySplit(query[stop:], query[start:stop], True)
            end = stop - 1  # an earlier, possibly overlapping occurrence
        if checked:
            return None  # the tail is there but nothing before it is the prompt's end
    return None
