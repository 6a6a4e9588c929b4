"""Plan a batch of encoded items as packed forwards (no torch here).

A *document* is one prompt followed by the completions that share it, each completion cut
after its last rationale token (later tokens cannot change the value):

    [ prompt (P) | completion 1 (n_1) | completion 2 (n_2) | ... ]
      positions 0..P-1, then every completion again from P: P..P+n_i-1

A *pack* is a row of documents that one forward pass computes, up to ``budget`` tokens.
The attention rule inside a pack (see ``packed_attention``): a token sees the tokens of its
own document only; a prompt token sees the prompt causally; a completion token sees the
whole prompt and, causally, its own completion, never another completion. So an item's
value is what it would be alone, whatever its pack mates.

Packing is greedy in batch order: a document goes into the current pack if it fits, else
starts the next one. A prompt group larger than ``document_budget`` (default: the pack
budget) is split into several documents, each repeating the prompt with as many
completions as fit; a document larger than the pack budget is a pack of its own (it fits
the model context, which ``encoding`` checked).

Rows: completion token ``t`` of an item is predicted by the hidden state of the token
before it: completion input ``t - 1``, or the prompt's last token for ``t == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reward_server.certainty.encoding import (
    EncodedItem,
    PromptKey,
    result_slots_and_prompt_groups,
)
from reward_server.certainty.types import CertaintyResult


@dataclass(slots=True)
class Segment:
    """One completion inside a pack: batch item ``item``, tokens ``[start, start + length)``."""

    item: int
    start: int
    length: int


@dataclass(slots=True)
class Document:
    """A prompt at ``[start, start + prompt_len)`` and the completions after it."""

    start: int
    prompt_len: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def prompt_end(self) -> int:
        return self.start + self.prompt_len

    @property
    def end(self) -> int:
        return self.segments[-1].start + self.segments[-1].length if self.segments else (
            self.prompt_end
        )


@dataclass(slots=True)
class Pack:
    """The input of one forward pass."""

    documents: list[Document] = field(default_factory=list)
    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def items(self) -> list[int]:
        return [s.item for d in self.documents for s in d.segments]

    def add_document(self, prompt: Sequence[int], members: list[tuple[int, EncodedItem]]) -> None:
        doc = Document(start=self.length, prompt_len=len(prompt))
        self.input_ids.extend(prompt)
        self.position_ids.extend(range(len(prompt)))
        for index, item in members:
            n = item.forward_tokens
            doc.segments.append(Segment(index, self.length, n))
            self.input_ids.extend(item.completion_ids[:n])
            self.position_ids.extend(range(len(prompt), len(prompt) + n))
        self.documents.append(doc)

    def predicting_rows(self, doc: Document, segment: Segment, item: EncodedItem) -> list[int]:
        """Pack indices of the hidden states that predict ``item``'s rationale tokens."""
        return [doc.prompt_end - 1 if t == 0 else segment.start + t - 1 for t in item.positions]


def _documents(
    prompt: Sequence[int], members: list[tuple[int, EncodedItem]], budget: int
) -> list[list[tuple[int, EncodedItem]]]:
    """A prompt group's completions split into documents of at most ``budget`` tokens
    (each document repeats the prompt; a first completion always fits)."""
    docs: list[list[tuple[int, EncodedItem]]] = [[]]
    used = len(prompt)
    for member in members:
        n = member[1].forward_tokens
        if docs[-1] and used + n > budget:
            docs.append([])
            used = len(prompt)
        docs[-1].append(member)
        used += n
    return docs


def plan_packs(
    items: Sequence[EncodedItem | CertaintyResult],
    budget: int,
    document_budget: int = 0,
    groups: dict[PromptKey, list[int]] | None = None,
) -> list[Pack]:
    """The packs that compute every encoded item of ``items`` (failures are skipped).
    ``groups`` is ``result_slots_and_prompt_groups(items)``'s grouping when the caller
    already made it (grouping hashes every prompt's ids)."""
    document_budget = document_budget or budget
    if budget <= 0 or document_budget <= 0:
        raise ValueError("the pack and document budgets must be positive")
    if groups is None:
        _, groups = result_slots_and_prompt_groups(items)
    packs: list[Pack] = []
    current = Pack()
    for prompt, idxs in groups.items():
        members = [(i, items[i]) for i in idxs]
        for doc in _documents(prompt, members, document_budget):  # type: ignore[arg-type]
            size = len(prompt) + sum(m.forward_tokens for _, m in doc)
            if current.documents and current.length + size > budget:
                packs.append(current)
                current = Pack()
            current.add_document(prompt, doc)
    if current.documents:
        packs.append(current)
    return packs
