"""`harness eval` of several models ends, when any failed, with one stderr line naming each failed model: the
`error: MODEL: ...` lines printed as failures happen scroll away under the progress of a long evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _eval(models: list[Path], suite: str, as_json: bool) -> subprocess.CompletedProcess[str]:
    """`harness eval MODELS --suite SUITE --limit 1` through the real CLI in a subprocess, on the CPU; a judged
    suite judged by the first model, with answers and judgments of 4 tokens (as tests/test_judge.py)."""
    args = [*map(str, models), "--suite", suite, "--limit", "1", "--device", "cpu", "--dtype", "float32"]
    if suite == "mt_bench":
        args += ["--judge", str(models[0]), "--max-new-tokens", "4", "--judge-max-new-tokens", "4"]
    return subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args, *(["--json"] if as_json else [])],
                          capture_output=True, text=True, cwd=ROOT)


def _lines(stderr: str) -> list[str]:
    """stderr's lines as a terminal leaves them (a progress bar redraws its line after a carriage return)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]


@pytest.mark.parametrize("suite, as_json", [("mt_bench", True), ("mt_bench", False), ("zoo_math", True),
                                            ("zoo_math", False)])
def test_the_last_stderr_line_names_each_failed_model(zoo_family: Path, results: Path, tmp_path: Path,
                                                       suite: str, as_json: bool) -> None:
    good, other = zoo_family / "zoo-base", zoo_family / "zoo-math"
    missing, gone = tmp_path / "no-such-model", tmp_path / "gone"
    proc = _eval([good, missing, other, gone], suite, as_json)
    assert proc.returncode == 2, proc.stderr  # the highest failure code: a missing folder is bad input
    lines = _lines(proc.stderr)
    assert lines[-1] == (f"2 of 4 models failed: {missing} (no model folder at {missing}), "
                         f"{gone} (no model folder at {gone})"), proc.stderr
    assert sum("models failed" in line for line in lines) == 1
    assert "Traceback" not in proc.stderr
    if suite == "mt_bench":  # a header only for the two models that start, none for a missing folder
        headers = [line for line in lines if f": mt_bench judged by {good} (hf)" in line]
        assert len(headers) == 2 and not any(str(missing) in h or str(gone) in h for h in headers), proc.stderr
    if as_json:  # stdout stays one JSON document, failures in it
        listed = json.loads(proc.stdout)
        assert [m["model"] for m in listed] == [str(good), str(missing), str(other), str(gone)]
        assert [m.get("status") for m in listed][1::2] == ["failed", "failed"]
        assert "no model folder" in listed[3]["error"]
        assert "models failed" not in proc.stdout


@pytest.mark.parametrize("suite", ["mt_bench", "zoo_math"])
def test_a_run_where_every_model_succeeds_prints_no_summary(zoo_family: Path, results: Path, suite: str) -> None:
    proc = _eval([zoo_family / "zoo-base", zoo_family / "zoo-math"], suite, as_json=False)
    assert proc.returncode == 0, proc.stderr
    assert "failed" not in proc.stderr and "error:" not in proc.stderr
