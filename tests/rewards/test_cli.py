"""The command line: `score` and `eval` on a JSONL file, run in a
subprocess as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {"format", "type", "attribute", "value", "self_certainty"}


def completion(action: dict, rationale: str = "I look for it.") -> str:
    return json.dumps({"rationale": rationale, "action": action})


GOOD_CLICK = {
    "id": "a",
    "completion": completion({"type": "click", "name": "buy_now"}),
    "ground_truth": {"type": "click", "name": "buy_now"},
}
GOOD_TAS = {
    "id": 7,
    "prompt": "You are shopping.",
    "completion": completion(
        {"type": "type_and_submit", "name": "search_input", "text": "geforce rtx 5090 rog"}
    ),
    "ground_truth": json.dumps(
        {"type": "type_and_submit", "name": "search_input", "text": "geforce gtx 5090 rog"}
    ),
}
MALFORMED = {"id": "m", "completion": "```json\n{}\n```", "ground_truth": {"type": "terminate"}}
WRONG_TYPE = {
    "completion": completion({"type": "terminate"}),
    "ground_truth": {"type": "click", "name": "buy_now"},
}
BAD_GT = {
    "id": "bad",
    "completion": completion({"type": "terminate"}),
    "ground_truth": {"type": "click"},
}
MALFORMED_WITH_CERTAINTY = {**MALFORMED, "self_certainty": 2.0}
WITH_CERTAINTY = {
    "completion": completion({"type": "terminate"}),
    "ground_truth": {"type": "terminate"},
    "self_certainty": 2.0,
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reward_server.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def results(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_score_good_lines_in_order(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [GOOD_CLICK, GOOD_TAS, MALFORMED, WRONG_TYPE, WITH_CERTAINTY, MALFORMED_WITH_CERTAINTY],
    )
    proc = run_cli("score", str(path))
    assert proc.returncode == 0, proc.stderr
    out = results(proc.stdout)
    assert [row["line"] for row in out] == [1, 2, 3, 4, 5, 6]
    for row in out:
        assert set(row["components"]) == COMPONENTS
        assert {"reward", "score", "format_ok", "config_hash"} <= set(row)
        assert "error" not in row
    first, second, third, fourth, fifth, sixth = out
    assert first["id"] == "a" and first["reward"] == pytest.approx(1001.0)
    assert first["components"] == {
        "format": 0.5,
        "type": 0.3,
        "attribute": 0.2,
        "value": 1000.0,
        "self_certainty": None,
    }
    assert first["score"] == pytest.approx(1.0)
    assert first["action"]["type"] == "click" and first["action"]["name"] == "buy_now"
    assert second["id"] == 7 and second["reward"] == pytest.approx(751.1)
    assert second["components"]["value"] == pytest.approx(750.1)
    assert third["format_ok"] is False and third["reward"] == 0.0
    assert third["format_error"]["reason"] == "not_json"
    assert fourth["reward"] == pytest.approx(0.5) and fourth["components"]["type"] == 0.0
    assert fifth["reward"] == pytest.approx(0.8 + 0.005 * 2.0)
    assert fifth["components"]["self_certainty"] == 2.0
    assert fifth["score"] == pytest.approx(1.0)
    assert fifth["certainty"]["source"] == "provided" and fifth["certainty"]["reason"] is None
    # REWARD_CONTRACT.md §2/§4: a failed format drops the value it came with, and says why.
    assert (sixth["reward"], sixth["components"]["self_certainty"]) == (0.0, None)
    assert sixth["certainty"] == {**fifth["certainty"], "reason": "format_failure"}
    assert len({row["config_hash"] for row in out}) == 1


def test_score_bad_lines_reported_rest_still_score(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            GOOD_CLICK,
            BAD_GT,  # line 2
            "this is not json",  # line 3
            {"completion": 5, "ground_truth": {"type": "terminate"}},  # line 4
            {"ground_truth": {"type": "terminate"}},  # line 5
            "",  # line 6 (blank)
            {**GOOD_TAS, "ground_truth": {"type": "type_and_submit", "name": "q", "text": 3}},  # 7
            WRONG_TYPE,  # line 8
            "[1, 2]",  # line 9
            {**WRONG_TYPE, "unknown_field": 1},  # line 10
        ],
    )
    proc = run_cli("score", str(path))
    assert proc.returncode == 1
    out = {row["line"]: row for row in results(proc.stdout)}
    assert sorted(out) == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert out[1]["reward"] == pytest.approx(1001.0)
    assert out[8]["reward"] == pytest.approx(0.5)
    errors = {line: row["error"] for line, row in out.items() if "error" in row}
    assert sorted(errors) == [2, 3, 4, 5, 7, 9, 10]
    assert errors[2]["field"] == "ground_truth.name"
    assert errors[4]["field"] == "completion"
    assert errors[5]["field"] == "completion"
    assert errors[7]["field"] == "ground_truth.text"
    assert errors[10]["field"] == "unknown_field"
    for line, error in errors.items():
        assert error["message"]
        assert f"line {line}:" in proc.stderr
    assert "line 2: ground_truth.name" in proc.stderr


def test_score_output_file_and_parse_mode(tmp_path: Path) -> None:
    fenced = {
        "completion": "```json\n" + completion({"type": "terminate"}) + "\n```",
        "ground_truth": {"type": "terminate"},
    }
    path = write_jsonl(tmp_path / "in.jsonl", [fenced])
    out_path = tmp_path / "out.jsonl"
    proc = run_cli("score", str(path), "-o", str(out_path), "--parse-mode", "lenient")
    assert proc.returncode == 0, proc.stderr
    (row,) = results(out_path.read_text())
    assert row["reward"] == pytest.approx(0.8)
    strict = results(run_cli("score", str(path)).stdout)[0]
    assert strict["reward"] == 0.0
    assert strict["config_hash"] != row["config_hash"]


def test_eval_prints_table(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD_CLICK, GOOD_TAS, MALFORMED, WRONG_TYPE])
    proc = run_cli("eval", str(path))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for word in (
        "click",
        "type_and_submit",
        "terminate",
        "exact acc",
        "type acc",
        "F1",
        "all",
        "format valid",
    ):
        assert word in text
    # Hand-computed: exact 2/4 (click exact, t&s names equal & sim 0.75); type hits 2/4.
    all_row = next(line for line in text.splitlines() if line.startswith("all"))
    assert all_row.split()[1:4] == ["4", "0.5000", "0.5000"]
    proc_json = run_cli("eval", str(path), "--json")
    metrics = json.loads(proc_json.stdout)
    assert metrics["count"] == 4
    assert metrics["exact_accuracy"] == pytest.approx(0.5)
    assert metrics["format_valid_rate"] == pytest.approx(0.75)
    # click: TP1 FN1 -> 2/3; t&s: TP1 -> 1; terminate: FP1 (wrong type) FN1 (malformed) -> 0.
    per = metrics["per_type"]
    assert per["click"]["count"] == 2 and per["terminate"]["count"] == 1
    assert per["click"]["f1"] == pytest.approx(2 / 3)
    assert per["type_and_submit"]["f1"] == pytest.approx(1.0)
    assert per["terminate"]["f1"] == 0.0
    assert metrics["type_macro_f1"] == pytest.approx(5 / 9)
    assert all_row.split()[4] == f"{5 / 9:.4f}"


def test_eval_bad_line_exit_status(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD_CLICK, BAD_GT])
    proc = run_cli("eval", str(path))
    assert proc.returncode == 1
    assert "line 2: ground_truth.name" in proc.stderr
    assert "all" in proc.stdout


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    proc = run_cli("score", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_score_invalid_utf8_line_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good = json.dumps(GOOD_CLICK).encode()
    path.write_bytes(
        good + b"\n" + b'{"completion": "\xff\xfe", "ground_truth": 1}\n' + good + b"\n"
    )
    proc = run_cli("score", str(path))
    assert proc.returncode == 1
    out = {row["line"]: row for row in results(proc.stdout)}
    assert sorted(out) == [1, 2, 3]
    assert "error" in out[2]
    assert out[1]["reward"] == pytest.approx(1001.0)
    assert out[3]["reward"] == pytest.approx(1001.0)


def test_score_union_fields_are_named_plainly(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {**GOOD_CLICK, "ground_truth": 5},
            {**GOOD_CLICK, "id": ["a"]},
            {**GOOD_CLICK, "prompt": 5},
        ],
    )
    proc = run_cli("score", str(path))
    assert proc.returncode == 1
    fields = [row["error"]["field"] for row in results(proc.stdout)]
    assert fields == ["ground_truth", "id", "prompt"]
