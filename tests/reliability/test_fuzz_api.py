"""Schemathesis over the service's own /openapi.json, run with the
installed CLI (``schemathesis run``) against a real rules-only server process.

CI: ``--max-examples 25`` per operation (about 700 generated cases, ~15 s);
``RELIABILITY_FULL=1``: 300 per operation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FULL = os.environ.get("RELIABILITY_FULL") == "1"
EXAMPLES = 300 if FULL else 25
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def run_schemathesis(url: str, checks: str, tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = [str(SCHEMATHESIS), "run", url + "/openapi.json", "--checks", checks,
            "--max-examples", str(EXAMPLES), "--workers", "1", "--seed", "6",
            "--request-timeout", "60", "--no-color", *extra]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", output)
    print(f"schemathesis ({checks}): {generated.group(0) if generated else '?'}")
    return result.returncode, output


pytestmark = pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis not installed")


def test_no_server_errors_and_responses_match_the_schema(rules_server, tmp_path) -> None:
    code, output = run_schemathesis(
        rules_server.url,
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        tmp_path,
    )
    assert code == 0, output[-6000:]
    assert re.search(r"[1-9]\d* generated", output), output[-2000:]


def test_every_status_is_documented(rules_server, tmp_path) -> None:
    code, output = run_schemathesis(rules_server.url, "status_code_conformance", tmp_path,
                                    "--max-failures", "1")
    assert code == 0, output[-6000:]
