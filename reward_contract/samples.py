"""A trainer's sample as the reward contract reads it, and the checks it must pass.

The service's trainer routes (``/get_reward``, ``/slime/reward``) and the trainer adapters
read samples the same way: one function here each, and one message per failure. A failure
raises :class:`SampleError`, which names the field in the trainer's own terms
(``labels[3]``); the routes answer it as a 422, the adapters raise it.

OpenRLHF sends ``query`` (the prompt and the response decoded as one text, special tokens
kept), ``prompts`` and ``labels``: the response is the query after its prompt (or after the
end of a prompt the trainer cut from the left: :func:`reward_contract.query.split_query`),
without trailing end-of-turn markers (:func:`reward_contract.strip_end_markers`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from reward_contract import strip_end_markers
from reward_contract.query import split_query

__all__ = [
    "OPENRLHF_LABEL_HINT",
    "SLIME_LABEL_HINT",
    "OpenRLHFSample",
    "SampleError",
    "SampleNames",
    "check_label",
    "check_lengths",
    "openrlhf_sample",
]

# How each trainer names the dataset column it sends as the label: an unset column
# arrives as "" (OpenRLHF) or null (slime), and only the trainer's flag fixes that.
OPENRLHF_LABEL_HINT = (
    "OpenRLHF sends the dataset column named by --data.label_key (--label_key before "
    "v0.11) as the label: set it to the ground-truth action column"
)
SLIME_LABEL_HINT = (
    "slime sends the dataset column named by --label-key as the label: set it to the "
    "ground-truth action column"
)


class SampleError(ValueError):
    """A sample that cannot be scored: ``param`` names the field as the trainer calls it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def check_label(label: Any, param: str, hint: str) -> None:
    """Raise :class:`SampleError` for an unset label column (``""`` or null); ``hint``
    says which trainer flag names that column."""
    if label is None or label == "":
        raise SampleError(f"{param} is empty: {hint}", param)


def check_lengths(queries: int, **others: int) -> None:
    """Raise :class:`SampleError` naming the first list whose length is not ``queries``.

    >>> check_lengths(2, prompts=2, labels=1)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    reward_contract.samples.SampleError: 1 labels for 2 queries
    """
    for name, count in others.items():
        if count != queries:
            raise SampleError(f"{count} {name} for {queries} queries", name)


class SampleNames(NamedTuple):
    """How one sample's fields are named in the trainer's terms (``query[3]``,
    ``labels[3]``, ``prompts[3]``; slime: ``response``, ``label``, ``prompt``)."""

    completion: str
    label: str
    prompt: str

    def param(self, field: str) -> str:
        """The trainer's name of a score item's field path: ``ground_truth.name`` becomes
        ``labels[3].name``, ``prompt[0].content`` becomes ``prompts[3][0].content``.

        >>> SampleNames("query[3]", "labels[3]", "prompts[3]").param("ground_truth.name")
        'labels[3].name'
        """
        for ours, theirs in (
            ("ground_truth", self.label), ("prompt", self.prompt), ("completion", self.completion)
        ):
            if field == ours or field.startswith((ours + ".", ours + "[")):
                return theirs + field.removeprefix(ours)
        return field


class OpenRLHFSample(NamedTuple):
    """One OpenRLHF sample, read: the ``response`` to score, the ``prompt`` the policy
    saw (None when none was sent), the ``label`` and whether the trainer cut the prompt."""

    response: str
    prompt: str | None
    label: Any
    prompt_cut: bool


def openrlhf_sample(query: str, prompt: str, label: Any, names: SampleNames) -> OpenRLHFSample:
    """One OpenRLHF sample split and checked: the response is where the query leaves its
    prompt (or the prompt's end), and the label must be set.

    >>> names = SampleNames("query[0]", "labels[0]", "prompts[0]")
    >>> openrlhf_sample('user: hi\\nassistant: {}<|im_end|>', 'user: hi\\nassistant: ', '{}', names)
    OpenRLHFSample(response='{}', prompt='user: hi\\nassistant: ', label='{}', prompt_cut=False)
    """
    split = split_query(query, prompt)
    if split is None:
        raise SampleError(
            f"{names.completion} holds neither {names.prompt} nor the end of it: cannot "
            "tell where the response starts",
            names.completion,
        )
    check_label(label, names.label, OPENRLHF_LABEL_HINT)
    return OpenRLHFSample(strip_end_markers(split.response), split.prompt or None, label,
                          split.truncated)
