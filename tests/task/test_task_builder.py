"""The Shop-R1 task built from the recorded shopping steps (shop_task; REWARD_CONTRACT.md §1)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from reward_server.config import RewardConfig
from reward_server.rewards import parse_ground_truth, score_batch
from shop_task import DEFAULT_STEPS_PATH, SYSTEM_PROMPT, TaskOptions, build_task, load_steps
from shop_task.__main__ import main as task_main
from shop_task.rows import FORMATS, chat_row, verl_row, write_format

NAME_ATTRIBUTE = re.compile(r"""name=(?:"([^"]*)"|'([^']*)')""")


def page_names(page_html: str) -> list[str]:
    return [double or single for double, single in NAME_ATTRIBUTE.findall(page_html)]


@pytest.fixture(scope="module")
def task():
    return build_task()


def test_the_build_is_deterministic(task):
    again = build_task()
    assert again.train == task.train and again.test == task.test
    assert [row.messages for row in again.train] == [row.messages for row in task.train]


def test_every_line_of_the_shipped_steps_is_a_row_or_reported(task):
    """Only targets that no answer could match (no letter or digit: no ROUGE-L token) are
    skipped, each with its line number."""
    text = DEFAULT_STEPS_PATH.read_text(encoding="utf-8")
    lines = sum(1 for line in text.splitlines() if line.strip())
    assert len(task.train) + len(task.test) + len(task.skipped) == lines
    assert task.skipped and all("has no letter or digit" in s.reason for s in task.skipped)
    rows = {row.line_number for row in (*task.train, *task.test)}
    assert not rows & {skipped.line_number for skipped in task.skipped}


def test_no_episode_is_in_both_splits_and_each_split_is_whole_episodes(task):
    train = {row.episode_id for row in task.train}
    test = {row.episode_id for row in task.test}
    assert train and test and not train & test
    assert round(0.2 * len(train | test)) == len(test)
    for episode in task.episodes("test"):
        assert [row.step for row in episode] == sorted(row.step for row in episode)
        assert len({row.episode_id for row in episode}) == 1


def test_the_seed_picks_another_split():
    one, other = build_task(), build_task(options=TaskOptions(seed=1))
    assert {r.episode_id for r in one.test} != {r.episode_id for r in other.test}


def test_every_prompt_holds_its_target_once_among_unique_names(task):
    for row in (*task.train, *task.test):
        names = page_names(row.page_html)
        assert len(names) == len(set(names)), row.id
        assert row.page_html in row.messages[1]["content"]
        assert row.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        if row.action_type == "terminate":
            continue
        assert names.count(row.ground_truth["name"]) == 1, row.id
        if row.action_type == "type_and_submit":
            assert f'<input type="text" name="{row.ground_truth["name"]}">' in row.page_html


def test_distractors_come_from_the_same_site_and_split(task):
    by_site = {}
    for row in task.train:
        if row.action_type != "terminate":
            by_site.setdefault(row.site, set()).add(row.ground_truth["name"])
    for row in task.train:
        names = page_names(row.page_html)
        assert set(names) <= by_site[row.site], row.id
        expected = min(6, len(by_site[row.site]) - (row.action_type != "terminate"))
        assert len(names) == expected + (row.action_type != "terminate")


def test_every_target_can_be_answered_exactly(task):
    """The shopper's real action, answered as the task asks, earns the best reward of its
    type (REWARD_CONTRACT.md §5: score 1)."""
    rows = (*task.train, *task.test)
    answers = [
        json.dumps({"rationale": "I do what I came to do.", "action": row.ground_truth})
        for row in rows
    ]
    results = score_batch(answers, [row.ground_truth_json for row in rows], RewardConfig())
    assert [r.score for r in results] == [1.0] * len(rows)
    assert Counter(row.action_type for row in rows).keys() == {
        "click", "type_and_submit", "terminate"
    }


def test_history_keeps_the_whole_session_or_the_latest_actions():
    full = build_task(options=TaskOptions(history="full")).train
    latest = build_task(options=TaskOptions(history="latest")).train
    two = build_task(options=TaskOptions(history=2)).train
    for whole, last, last_two in zip(full, latest, two, strict=True):
        assert last.history == whole.history[-1:] and last_two.history == whole.history[-2:]
    assert max(len(row.history) for row in full) > 2
    with pytest.raises(ValueError, match="history"):
        TaskOptions(history="some")


def test_distractor_count_is_an_option(task):
    none = build_task(options=TaskOptions(distractors=0))
    for row in none.train:
        assert len(page_names(row.page_html)) == (row.action_type != "terminate")


def test_bad_lines_are_reported_with_their_number_and_the_rest_is_kept(tmp_path):
    good = DEFAULT_STEPS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)[:5]
    lines = [
        good[0],
        "{not json\n",
        json.dumps({**json.loads(good[1]), "name": "  "}) + "\n",  # a click without target
        "\n",
        json.dumps(["a", "list"]) + "\n",
        json.dumps({**json.loads(good[2]), "kind": "scroll"}) + "\n",
        *good[3:],
    ]
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    loaded = load_steps(path)
    assert [(s.line_number, s.reason.split(" ")[0]) for s in loaded.skipped] == [
        (2, "not"), (3, "a"), (5, "not"), (6, "kind")
    ]
    assert "empty name" in loaded.skipped[1].reason
    assert [s.line_number for s in loaded.steps] == [1, 7, 8]
    task = build_task(path, TaskOptions(test_fraction=0))
    assert len(task.train) == 3 and task.skipped == loaded.skipped
    icon = json.dumps({**json.loads(good[1]), "name": "\uf002"})
    assert "has no letter or digit" in load_steps_from(tmp_path, icon).skipped[0].reason


def load_steps_from(tmp_path, line: str):
    path = tmp_path / "one.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    return load_steps(path)


def test_every_trainer_format_is_written_from_the_same_rows(task, tmp_path, capsys):
    assert task_main([str(tmp_path), "--distractors", "6"]) == 0
    for fmt in FORMATS:
        for split in ("train", "test"):
            rows = task.split(split)
            if fmt == "verl":
                import pyarrow.parquet as pq

                table = pq.read_table(tmp_path / fmt / f"{split}.parquet").to_pylist()
                assert table[0] == verl_row(chat_row(rows[0]), 0, split)
                assert len(table) == len(rows)
                continue
            written = (tmp_path / fmt / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            assert [json.loads(line) for line in written] == [chat_row(r) for r in rows]
    row = json.loads((tmp_path / "trl" / "test.jsonl").read_text().splitlines()[0])
    assert parse_ground_truth(row["ground_truth"]).type in ("click", "type_and_submit", "terminate")
    with pytest.raises(ValueError, match="format"):
        write_format(task, "csv", tmp_path)
