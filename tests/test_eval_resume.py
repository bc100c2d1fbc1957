"""A real `harness` evaluation killed halfway (SIGKILL) never shows as complete, leaves no scores, and the
re-run finishes using the answers the killed run had already computed, with the rows of a run never killed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
N_DOCS = 150  # per task; 2 tasks x 4 choices = 1200 requests


def _cached_rows(results: Path) -> int:
    total = 0
    for db in (results / "cache" / "requests").glob("*.sqlite"):
        try:
            with sqlite3.connect(db, timeout=5) as con:
                total += con.execute("SELECT count(*) FROM answers").fetchone()[0]
        except sqlite3.Error:
            pass
    return total


def _worker(model: Path, suite_root: Path) -> list[str]:
    return [sys.executable, "-m", "tests.test_eval_support", str(model), str(suite_root), str(N_DOCS), "4"]


@pytest.mark.slow
def test_killed_run_resumes_from_the_cache(results: Path, store, tiny_llama, tmp_path: Path) -> None:
    # wide enough that the answers take several seconds: the kill must land mid-run even on an idle machine
    model = tiny_llama("resume", hidden=512, heads=8, intermediate=2048, layers=4)
    env = {**os.environ, "HARNESS_RESULTS": str(results), "HARNESS_DB": str(results / "harness.duckdb")}
    err = (tmp_path / "worker.err").open("w")
    proc = subprocess.Popen(_worker(model, tmp_path / "suite"), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err)
    deadline = time.monotonic() + 300
    t0 = time.monotonic()
    while _cached_rows(results) < 100:
        assert proc.poll() is None, ("the run ended before it could be killed: "
                                     + (tmp_path / "worker.err").read_text()[-1500:])
        assert time.monotonic() < deadline, "no answers were cached in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    err.close()
    print(f"killed after {time.monotonic() - t0:.1f} s")
    at_kill = _cached_rows(results)
    assert 100 <= at_kill < 2 * N_DOCS * 4

    (killed,) = store.list_runs(status=None)
    assert killed.status == "running"  # never complete
    assert store.list_runs() == [] and store.scores(killed.run_id) == [] and store.samples(killed.run_id).empty
    assert not (results / "runs" / killed.run_id).exists()

    done = subprocess.run(_worker(model, tmp_path / "suite"), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"re-run done after {time.monotonic() - t0:.1f} s")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["run_id"] == killed.run_id
    assert out["cached"] >= at_kill and out["new"] > 0
    assert out["cached"] + out["new"] == 2 * N_DOCS * 4
    run = store.get_run(killed.run_id)
    assert run.status == "complete"
    assert {s.task for s in store.scores(run.run_id)} == {"tmp_mc", "tmp_mc2", "_aggregate"}
    assert len(store.samples(run.run_id)) == 2 * N_DOCS

    # the same run in a fresh results folder, never killed: same run id, same rows (answers to float noise: the
    # resumed run computed its uncached requests in other batches)
    fresh = tmp_path / "fresh"
    env2 = {**env, "HARNESS_RESULTS": str(fresh), "HARNESS_DB": str(fresh / "harness.duckdb")}
    once = subprocess.run(_worker(model, tmp_path / "suite"), cwd=REPO, env=env2, capture_output=True, text=True,
                          timeout=600)
    assert once.returncode == 0, once.stderr[-2000:]
    assert json.loads(once.stdout.strip().splitlines()[-1])["run_id"] == run.run_id
    from harness.store import Store

    other = Store(fresh / "harness.duckdb")
    assert [(s.task, s.metric, s.n) for s in store.scores(run.run_id)] == [
        (s.task, s.metric, s.n) for s in other.scores(run.run_id)]
    for a, b in zip(store.scores(run.run_id), other.scores(run.run_id), strict=True):
        assert a.value == pytest.approx(b.value, abs=1e-12) and a.stderr == pytest.approx(b.stderr, rel=1e-9)
    mine, theirs = store.samples(run.run_id), other.samples(run.run_id)
    keys = ["task", "doc_id", "metric", "doc_hash", "prompt_hash", "target_hash", "prompt", "target", "score"]
    assert mine[keys].equals(theirs[keys])
    for x, y in zip(mine["extra"], theirs["extra"], strict=True):  # per-choice loglikelihoods
        x, y = json.loads(x), json.loads(y)
        assert x.keys() == y.keys()
        assert json.dumps(x, sort_keys=True) == json.dumps(y, sort_keys=True) or _close(x, y)


def _close(x: object, y: object) -> bool:
    """Equal structures, numbers within 1e-4 (a loglikelihood computed in another batch)."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(_close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= 1e-4
    return x == y
