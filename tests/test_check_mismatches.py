"""`harness check --allow-mismatch` says what it let through: real zoo models, real baseline files written by
`harness baseline save`, real suites changed on disk after the save, the CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ZOO_MATH_DATA = REPO / "suites" / "zoo" / "zoo_math" / "data" / "public.jsonl"
TASKS = {"zoo_arith_a": range(0, 60), "zoo_arith_b": range(100, 140)}  # task -> rows of zoo_math's public data


def write_arith_suite(root: Path, version: str = "1", rows: dict[str, list[dict]] | None = None) -> Path:
    """zoo_math's multiple-choice questions as a suite of two tasks (`TASKS`, or the given rows per task)."""
    from tests.factories import write_mc_suite

    return write_mc_suite(root / "zoo_arith", rows or arith_rows(), "doc_to_text: '{{question}}'\ntarget_delimiter: "
                          "' '\ndoc_to_choice: choices\ndoc_to_target: label\n", version=version)


def arith_rows() -> dict[str, list[dict]]:
    lines = ZOO_MATH_DATA.read_text().splitlines()
    return {task: [json.loads(lines[i]) for i in span] for task, span in TASKS.items()}


@pytest.fixture()
def arith(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES", str(root))
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli.__main__", *args], capture_output=True, text=True,
                          cwd=REPO)


def _save(model: Path, name: str, results: Path) -> dict:
    """`harness baseline save` on zoo_arith: the file it wrote."""
    proc = _cli("baseline", "save", str(model), "--suite", "zoo_arith", "--name", name, "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    return json.loads((results / "baselines" / f"{name}.json").read_text())


def _check(model: Path, baseline: str, *extra: str) -> subprocess.CompletedProcess:
    return _cli("check", "--candidate", str(model), "--baseline", baseline, "--no-promote", *extra)


def _allowed(model: Path, baseline: str, refusal: str) -> dict:
    """The check refused without --allow-mismatch (its line holds `refusal`); with it, the --json verdict."""
    refused = _check(model, baseline)
    assert refused.returncode == 2 and refusal in refused.stderr, refused.stderr
    proc = _check(model, baseline, "--allow-mismatch", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _run_docs(store, run_id: str, task: str) -> dict[int, str]:
    """{doc_id: doc_hash} of a stored run's task, read from the store's samples table."""
    rows = store.samples(run_id, task)
    return {int(d): h for d, h in zip(rows["doc_id"], rows["doc_hash"], strict=True)}


def _verdict_line(report: str) -> str:
    return next(x for x in report.splitlines() if x.startswith("## harness check"))


def test_a_check_with_no_mismatch_lists_none(zoo_family: Path, results: Path, arith: Path, store) -> None:
    """The same suite, data and settings: `mismatches` is empty and the verdict line says nothing of a part."""
    write_arith_suite(arith)
    model = zoo_family / "zoo-math"
    _save(model, "rel1", results)
    proc = _check(model, "rel1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mismatches"] == []
    proc = _check(model, "rel1", "--allow-mismatch")
    assert proc.returncode == 0, proc.stderr
    assert _verdict_line(proc.stdout).endswith(": PASSED") and "mismatch" not in proc.stdout.lower()


def test_documents_only_on_one_side_are_listed_with_the_counts_compared(zoo_family: Path, results: Path,
                                                                        arith: Path, store) -> None:
    """A baseline saved on 60 documents of task a, checked after the data lost its last 15: the check lists task a's
    15 baseline documents not in this run and the 45 it compared on (and the data hash), not task b. The other way
    round, a baseline saved on the 45, checked on the 60: 15 documents of this run not in the baseline. Before, the
    report of such a check was that of a full one: PASSED, nothing said."""
    rows = arith_rows()
    write_arith_suite(arith, rows=rows)
    model = zoo_family / "zoo-math"
    long = _save(model, "long", results)
    write_arith_suite(arith, rows={**rows, "zoo_arith_a": rows["zoo_arith_a"][:45]})
    short = _save(model, "short", results)
    verdict = _allowed(model, "long", "--allow-mismatch")
    run = store.get_run(verdict["candidate_run"])
    then, now = set(map(int, long["tasks"]["zoo_arith_a"]["samples"])), set(_run_docs(store, run.run_id, "zoo_arith_a"))
    assert (len(then - now), len(then & now), len(now - then)) == (15, 45, 0)  # the file and the store, by hand
    by_task = {m["task"]: m for m in verdict["mismatches"]}
    assert set(by_task) == {None, "zoo_arith_a"}, verdict["mismatches"]  # task b is the same: not listed
    assert by_task["zoo_arith_a"] | {"text": ""} == {
        "task": "zoo_arith_a", "kind": "documents", "baseline_only": len(then - now), "run_only": len(now - then),
        "common": len(then & now), "text": ""}
    assert by_task[None] | {"text": ""} == {"task": None, "kind": "suite", "field": "data_hash",
                                             "baseline": long["suite"]["data_hash"], "candidate": run.data_hash,
                                             "text": ""}
    assert {v["task"]: v["n"] for v in verdict["tasks"]} == {"zoo_arith_a": 45, "zoo_arith_b": 40}

    text = _check(model, "long", "--allow-mismatch")
    assert text.returncode == 0, text.stderr
    assert "partial" in _verdict_line(text.stdout), text.stdout
    lines = text.stdout.splitlines()
    assert sum("zoo_arith_a:" in x for x in lines) == 1 and not any("zoo_arith_b:" in x for x in lines)
    assert any(x.endswith("zoo_arith_a: 15 baseline documents not in this run, compared on the 45 common")
               for x in lines), text.stdout

    write_arith_suite(arith, rows=rows)  # the data grew back: the short baseline lacks 15 of this run's documents
    proc = _check(model, "short", "--allow-mismatch", "--json")
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)
    then = set(map(int, short["tasks"]["zoo_arith_a"]["samples"]))
    now = set(_run_docs(store, verdict["candidate_run"], "zoo_arith_a"))
    (docs,) = [m for m in verdict["mismatches"] if m["kind"] == "documents"]
    assert (docs["task"], docs["baseline_only"], docs["run_only"], docs["common"]) == (
        "zoo_arith_a", len(then - now), len(now - then), len(then & now)) == ("zoo_arith_a", 0, 15, 45)
    assert docs["text"] == "zoo_arith_a: 15 documents of this run not in the baseline, compared on the 45 common"


def test_documents_holding_other_content_are_listed(zoo_family: Path, results: Path, arith: Path, store) -> None:
    """After the save, documents 3 and 5 of task a swap places and document 7 is reworded: three doc ids of the
    baseline hold other content now. The check lists them (compared by document id, as allowed), with the data
    hash; counted here from the baseline file's doc_hashes and the candidate run's samples in the store."""
    rows = arith_rows()
    write_arith_suite(arith, rows=rows)
    model = zoo_family / "zoo-math"
    doc = _save(model, "rel1", results)
    a = list(rows["zoo_arith_a"])
    a[3], a[5] = a[5], a[3]
    a[7] = {**a[7], "question": a[7]["question"].replace("How many", "How many, then,")}
    write_arith_suite(arith, rows={**rows, "zoo_arith_a": a})
    verdict = _allowed(model, "rel1", "--allow-mismatch")
    then = {int(k): h for k, h in doc["tasks"]["zoo_arith_a"]["doc_hashes"].items()}
    now = _run_docs(store, verdict["candidate_run"], "zoo_arith_a")
    differ = sorted(k for k in then.keys() & now.keys() if then[k] != now[k])
    assert differ == [3, 5, 7]
    (moved,) = [m for m in verdict["mismatches"] if m["kind"] == "doc_hash"]
    assert (moved["task"], moved["differ"], moved["common"], moved["first"]) == (
        "zoo_arith_a", len(differ), len(then.keys() & now.keys()), differ[0])
    assert {m["kind"] for m in verdict["mismatches"]} == {"doc_hash", "suite"}  # and the data hash; no documents
    assert moved["text"] == ("zoo_arith_a: 3 of the 60 common documents hold other content than the baseline's "
                             "(document 3 first), paired by document id all the same")
    text = _check(model, "rel1", "--allow-mismatch")
    assert "partial" in _verdict_line(text.stdout) and moved["text"] in text.stdout, text.stdout


def test_a_changed_suite_version_is_listed(zoo_family: Path, results: Path, arith: Path, store) -> None:
    """The suite's version went from 1 to 2 after the save (its data and tasks unchanged): the one mismatch listed
    is the version, the baseline file's and the candidate run's as the store holds it."""
    write_arith_suite(arith, version="1")
    model = zoo_family / "zoo-math"
    doc = _save(model, "rel1", results)
    write_arith_suite(arith, version="2")
    verdict = _allowed(model, "rel1", "version 1")
    run = store.get_run(verdict["candidate_run"])
    assert verdict["mismatches"] == [{"task": None, "kind": "suite", "field": "version",
                                      "baseline": doc["suite"]["version"], "candidate": run.suite_version,
                                      "text": "suite version '1' (baseline) vs '2' (this run)"}]
    assert (doc["suite"]["version"], run.suite_version) == ("1", "2")
    text = _check(model, "rel1", "--allow-mismatch")
    assert text.returncode == 0, text.stderr
    assert "partial" in _verdict_line(text.stdout)
    assert "- suite version '1' (baseline) vs '2' (this run)" in text.stdout.splitlines(), text.stdout
