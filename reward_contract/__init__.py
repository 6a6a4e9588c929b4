"""The vocabulary and the pure rules that the reward service, its client and the trainer
adapters share; it imports the standard library only.

The base distribution (client and adapters) and the server both import it, so each name,
value set and rule here has exactly one definition: this module's names, the trainer
samples (:mod:`.samples`, :mod:`.query`), the per-sample log keys (:mod:`.logs`) and the
self-certainty span, mask and approximate decision (:mod:`.certainty`). The reward
contract itself is written up in ``docs/REWARD_CONTRACT.md``.
"""

from __future__ import annotations

from typing import Literal

ActionType = Literal["click", "type_and_submit", "terminate"]
ACTION_TYPES: tuple[ActionType, ...] = ("click", "type_and_submit", "terminate")

CertaintyKind = Literal["kl_uniform", "kl_to_uniform"]
CertaintySource = Literal["model", "provided", "none"]
CERTAINTY_SOURCES: tuple[CertaintySource, ...] = ("model", "provided", "none")

# The rule components of a reward (REWARD_CONTRACT.md §2-3), then the rationale's.
RULE_COMPONENTS = ("format", "type", "attribute", "value")
COMPONENT_NAMES = (*RULE_COMPONENTS, "self_certainty")

# End-of-turn markers a trainer may leave at the end of a decoded response (OpenRLHF's
# query keeps special tokens); they are not part of the JSON answer.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>", "<eos>")
# A policy gone degenerate can emit end markers without end; past this many characters
# of them the rest is left in place, and the answer then fails its format check.
MAX_STRIPPED_CHARS = 4096


def strip_end_markers(text: str, max_stripped: int = MAX_STRIPPED_CHARS) -> str:
    """``text`` without trailing white space and end-of-turn markers.

    Linear and bounded: at most ``max_stripped`` trailing characters are looked at, one
    index walking back (no copy per marker), and the result is sliced once.

    >>> strip_end_markers('{"a": 1}<|im_end|>\\n<|endoftext|>')
    '{"a": 1}'
    """
    end = len(text)
    floor = max(0, end - max_stripped)
    while end > floor:
        if text[end - 1].isspace():
            end -= 1
            continue
        for marker in END_OF_TURN_MARKERS:
            if end - len(marker) >= floor and text.endswith(marker, 0, end):
                end -= len(marker)
                break
        else:
            break
    return text[:end]
