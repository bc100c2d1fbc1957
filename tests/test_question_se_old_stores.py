"""A store written before v5 (no question-clustered stderr columns) read by the read-only views: `harness
leaderboard`, `harness overfit` and the dashboard show the clustered stderr a writer's fill gives (harness db info),
computed from the stored samples without writing it; and `harness eval --workers N` fills the store as a serial
`harness eval` does. The old run is a real zoo_math run downgraded to v4 (tests/factories.py `downgrade_store`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FLAGS = ("--suite", "zoo_math", "--limit", "16", "--no-cache", "--device", "cpu", "--dtype", "float32",
         "--batch-size", "8")
TASKS = (("zoo_math_mc_public", "acc"), ("zoo_math_gen_public", "exact_match,strip"))


def _leaderboard(db: Path) -> list[dict]:
    """`harness leaderboard --json` in its own process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "--db", str(db), "leaderboard", "--json"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _row(board: list[dict], run_id: str) -> dict:
    (row,) = [r for r in board if r["run_id"] == run_id]
    return row


def _by_hand(samples) -> tuple[float, float]:
    """The size-weighted suite score's stderr clustered by question (a zoo document is one question, scored by
    multiple choice and by generation: its doc_hash), and lm-eval's pooled one, with numpy from the samples."""
    tasks = [samples[(samples["task"] == t) & (samples["metric"] == m)].sort_values("doc_id") for t, m in TASKS]
    total = sum(len(t) for t in tasks)
    resid: dict[str, float] = {}
    for t in tasks:
        x = t["score"].to_numpy(dtype=float)
        for h, r in zip(t["doc_hash"], (x - x.mean()) / total, strict=True):  # c_t / n_t = 1 / N
            resid[h] = resid.get(h, 0.0) + r
    g, r = len(resid), np.array(list(resid.values()))
    assert g == len(tasks[0]) == len(tasks[1]) == 16  # each document asked twice, once per task
    clustered = float(np.sqrt(g / (g - 1) * np.sum(r * r)))
    # lm-eval's pooled_sample_stderr of the two tasks' sample stderrs (ddof 1)
    ses = [t["score"].std(ddof=1) / np.sqrt(len(t)) for t in tasks]
    pooled = float(np.sqrt(sum((len(t) - 1) * len(t) * s * s for t, s in zip(tasks, ses, strict=True))
                           / (total - len(tasks)) / total))
    return clustered, pooled


def _unfilled(db: Path, run_id: str) -> bool:
    """Whether the store still lacks the fill: no marker, and the run's columns NULL."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        marker = con.execute("SELECT count(*) FROM meta WHERE key = 'question_se:filled'").fetchone()[0]
        cols = con.execute("SELECT question_metric, question_se_size, question_se_mean FROM runs WHERE run_id = ?",
                           [run_id]).fetchone()
    return marker == 0 and cols == (None, None, None)


@pytest.fixture()
def old_store(zoo_family: Path, tmp_path: Path) -> tuple[Path, str, object]:
    """A real zoo-math zoo_math:public run (16 documents a task) in a store downgraded to v4, its run id, and its
    samples as the fresh store held them."""
    from harness.store import Store
    from tests.factories import downgrade_store, run_cli

    fresh = tmp_path / "fresh.duckdb"
    code, out, err = run_cli("--db", str(fresh), "eval", str(zoo_family / "zoo-math"), *FLAGS, "--json")
    assert code == 0, err
    run_id = json.loads(out)[0]["run_id"]
    samples = Store(fresh).samples(run_id)
    old = tmp_path / "v4.duckdb"
    shutil.copy(fresh, old)
    downgrade_store(old, 4)  # the file as a v4 harness wrote it
    return old, run_id, samples


def test_the_leaderboard_of_a_store_written_before_v5_shows_the_filled_stderr_without_writing_it(
        old_store: tuple[Path, str, object], tmp_path: Path) -> None:
    """`harness leaderboard --json` on the v4 store gives the interval it gives after `harness db info` filled a copy
    (the stderr clustered by question, by hand); before, the pooled stderr (narrower) until a writer ran. The read
    leaves the fill unwritten; so do `harness overfit` and the dashboard's evidence (the same suite scores)."""
    from harness.analysis.evidence import gather_base
    from harness.store import Store
    from tests.factories import run_cli

    old, run_id, samples = old_store
    clustered, pooled = _by_hand(samples)
    assert clustered != pytest.approx(pooled, rel=1e-3), "these samples do not tell the two rules apart"
    filled = tmp_path / "filled.duckdb"
    shutil.copy(old, filled)
    assert run_cli("--db", str(filled), "db", "info")[0] == 0
    want = _row(_leaderboard(filled), run_id)
    assert want["stderr"] == pytest.approx(clustered, rel=1e-12)

    got = _row(_leaderboard(old), run_id)
    print(f"read-only se {got['stderr']!r}, after db info {want['stderr']!r}, clustered by hand {clustered!r}, "
          f"pooled {pooled!r}")
    assert (got["stderr"], got["ci_low"], got["ci_high"]) == (want["stderr"], want["ci_low"], want["ci_high"])
    assert _unfilled(old, run_id), "a read-only view wrote the fill"

    scores = gather_base(Store(old)).scores.set_index("run_id")  # what `harness overfit` and the dashboard read
    assert float(scores.loc[run_id, "se"]) == want["stderr"]
    assert _unfilled(old, run_id)
    code, _, err = run_cli("--db", str(old), "overfit", "--json")
    assert code == 0, err
    assert _unfilled(old, run_id)


def test_eval_with_workers_fills_a_store_written_before_v5(old_store: tuple[Path, str, object],
                                                           zoo_family: Path) -> None:
    """`harness eval --workers 2` over the v4 store (the run is complete: reused, no actor starts) fills the old
    runs' clustered stderr as a serial `harness eval` does; before, it recorded runs outside evaluate_model and
    left the store unfilled."""
    from harness.store import Store
    from tests.factories import run_cli

    old, run_id, samples = old_store
    code, out, err = run_cli("--db", str(old), "eval", str(zoo_family / "zoo-math"), *FLAGS, "--workers", "2",
                             "--json")
    assert code == 0, err
    assert json.loads(out)[0]["run_id"] == run_id
    with Store(old).db.read() as con:
        metric, by_size = con.execute("SELECT question_metric, question_se_size FROM runs WHERE run_id = ?",
                                      [run_id]).fetchone()
        marker = con.execute("SELECT count(*) FROM meta WHERE key = 'question_se:filled'").fetchone()[0]
    assert (metric, marker) == ("acc+exact_match,strip", 1)
    assert by_size == pytest.approx(_by_hand(samples)[0], rel=1e-12)
