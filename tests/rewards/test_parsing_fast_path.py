"""The native-code fast path of strict parsing agrees with the reference walker (spec §2).

Whenever the fast path accepts a completion, the key-by-key walker must accept it too,
with the same rationale, action and rationale span; everything else goes to the walker.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from reward_server.rewards.parsing import _parse_fast_strict, _parse_walking
from reward_server.rewards.types import ParsedCompletion

KEYS = st.sampled_from(["rationale", "action", "type", "name", "text", "r\\u0061tionale", "x"])
TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "click", "terminate", "type_and_submit", '"rationale":', '\\"', "{}"]
)
WS = st.sampled_from(["", " ", "\n", "\t ", "\u00a0"])


@st.composite
def objects(draw, depth: int = 0) -> str:
    """Raw JSON-ish object text, with duplicate keys, escapes and odd spacing allowed."""
    members = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(KEYS)
        if depth == 0 and draw(st.booleans()):
            value = draw(objects(depth=1))
        else:
            value = json.dumps(draw(TEXT), ensure_ascii=draw(st.booleans()))
        members.append(f'{draw(WS)}"{key}"{draw(WS)}:{draw(WS)}{value}{draw(WS)}')
    return draw(WS) + "{" + ",".join(members) + "}" + draw(WS)


def well_formed() -> st.SearchStrategy[str]:
    action = st.fixed_dictionaries(
        {"type": st.sampled_from(["click", "type_and_submit", "terminate"])},
        optional={"name": TEXT, "text": TEXT},
    )
    return st.builds(
        lambda r, a, order: json.dumps(
            {"rationale": r, "action": a} if order else {"action": a, "rationale": r}
        ),
        TEXT.filter(lambda t: t.strip()), action, st.booleans(),
    )


def assert_agrees(completion: str) -> None:
    fast = _parse_fast_strict(completion)
    if fast is None:
        return
    walked = _parse_walking(completion, strict=True)
    assert isinstance(walked, ParsedCompletion), (completion, walked)
    assert fast == walked, completion
    start, stop = fast.rationale_span
    assert json.loads('"' + completion[start:stop] + '"') == fast.rationale


@settings(max_examples=400, deadline=None)
@given(objects())
def test_fast_path_never_accepts_what_the_walker_rejects(completion: str) -> None:
    assert_agrees(completion)


@settings(max_examples=200, deadline=None)
@given(well_formed())
def test_fast_path_takes_well_formed_answers(completion: str) -> None:
    assert_agrees(completion)
    assert _parse_fast_strict(completion) is not None


def test_duplicate_keys_are_left_to_the_walker() -> None:
    for completion in (
        '{"rationale": "a", "rationale": "b", "action": {"type": "terminate"}}',
        '{"rationale": "a", "action": {"type": "click", "type": "terminate"}}',
    ):
        assert _parse_fast_strict(completion) is None
        assert _parse_walking(completion, strict=True).reason == "duplicate_keys"
