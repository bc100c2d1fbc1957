"""The fill of a store written before v5 (its runs' question-clustered stderr, harness/store/suite_se.py) commits in
chunks of runs: a fill killed part way (SIGKILL, a real process: tests/store_worker.py `fill`) leaves the runs of its
committed chunks filled and the store not marked filled, and the next fill completes it with the values an
uninterrupted fill stores, which equal what `Store.finish_run` stored when the runs were written and the formula of
harness.stats.question_clustered_stderr computed here with numpy from the rows written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.stats import question_clustered_stderr

REPO = Path(__file__).resolve().parent.parent
MGSM_METRIC = "exact_match,last-number"


def _by_numpy(tasks: dict[str, tuple[np.ndarray, list[str]]]) -> tuple[float, float]:
    """Both stderrs by the docstring's formula, var = G / (G - 1) sum_g (sum_{i in g} c_t / n_t (x_i - mean_t))^2,
    size-weighted (c_t = n_t / N) and plain (c_t = 1 / k), with numpy over the questions' keys."""
    x = np.concatenate([v for v, _ in tasks.values()])
    keys = np.array([k for _, ks in tasks.values() for k in ks])
    sizes = np.concatenate([np.full(v.size, v.size, dtype=float) for v, _ in tasks.values()])
    centred = np.concatenate([v - v.mean() for v, _ in tasks.values()])
    _, cluster = np.unique(keys, return_inverse=True)
    g = cluster.max() + 1
    out = []
    for weight in (centred / x.size, centred / (len(tasks) * sizes)):
        r = np.bincount(cluster, weights=weight, minlength=g)
        out.append(float(np.sqrt(g / (g - 1) * np.sum(r * r))))
    # the per-run function the store computed each run with before (harness.stats), on the same items
    per_run = [question_clustered_stderr([(v, ks, c(v)) for v, ks in tasks.values()])
               for c in (lambda v: v.size / x.size, lambda v: 1 / len(tasks))]
    assert per_run == pytest.approx(out, rel=1e-12, abs=0)
    return out[0], out[1]


def _write(store, run_id: str, suite: str, split: str, rows: dict[str, list[tuple[float, str]]], metric: str,
           off: float = 0.0) -> None:
    """A run written as the runner writes one: lm-eval's task rows, the samples with their doc_hash, the questions
    named by the runner's helper; `off`: a task value its documents do not make (no clustered stderr)."""
    from lm_eval.api.metrics import mean_stderr

    from harness.evaluate.lm_eval_run import scored_questions
    from harness.store.records import RunRecord, Sample, Score

    run = RunRecord(run_id, "m", suite, "synthetic", "0", split=split)
    store.start_run(run)
    samples = [Sample(t, i, metric, s, doc_hash=h) for t, items in rows.items() for i, (s, h) in enumerate(items)]
    scores = [Score(t, metric, float(np.mean([s for s, _ in items])) + off, mean_stderr([s for s, _ in items]),
                    len(items)) for t, items in rows.items()]
    questions, want = scored_questions(run, samples)
    store.finish_run(run_id, scores, samples, questions, want)


def _stored(db: Path) -> dict[str, tuple]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT run_id, question_metric, question_se_size, question_se_mean FROM runs").fetchall()
    return {r: tuple(v) for r, *v in rows}


def _is_filled(db: Path) -> bool:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM meta WHERE key = 'question_se:filled'").fetchone()[0] == 1


@pytest.fixture()
def written(store) -> tuple[Path, dict[str, tuple[float, float] | None]]:
    """A store of 30 runs written by Store.finish_run: zoo_math:public (multiple choice and generation score the
    same documents, generation fewer), mgsm:cot (row i of its 11 languages: one problem), gsm8k (one item per
    question: no clustered stderr) and a zoo_math run whose stored value its documents do not make; with each run's
    stderrs by numpy (None: none)."""
    from harness.suites import load_suite

    rng = np.random.default_rng(21)
    want: dict[str, tuple[float, float] | None] = {}
    mgsm = load_suite("mgsm").splits["cot"]
    for i in range(12):
        n_mc, n_gen = int(rng.integers(12, 30)), int(rng.integers(5, 12))
        u = rng.normal(0, 1.5, n_mc)
        rows = {t: [(float(rng.random() < 1 / (1 + np.exp(-u[d]))), f"doc{d}") for d in range(n)]
                for t, n in (("zoo_math_mc_public", n_mc), ("zoo_math_gen_public", n_gen))}
        _write(store, f"zoo-{i:02d}", "zoo_math", "public", rows, "acc")
        want[f"zoo-{i:02d}"] = _by_numpy({t: (np.array([s for s, _ in v]), [h for _, h in v]) for t, v in rows.items()})
    for i in range(12):
        n = int(rng.integers(8, 20))
        u = rng.normal(0, 1.5, n)
        rows = {t: [(float(rng.random() < 1 / (1 + np.exp(-u[d]))), f"{t}#{d}") for d in range(n)] for t in mgsm}
        _write(store, f"mgsm-{i:02d}", "mgsm", "cot", rows, MGSM_METRIC)
        want[f"mgsm-{i:02d}"] = _by_numpy({t: (np.array([s for s, _ in v]), [f"q{d}" for d in range(n)])
                                           for t, v in rows.items()})
    for i in range(5):
        rows = {"gsm8k_cot": [(float(rng.random() < 0.4), f"g{d}") for d in range(25)]}
        _write(store, f"gsm-{i:02d}", "gsm8k", "public", rows, "exact_match,strict-match")
        want[f"gsm-{i:02d}"] = None
    rows = {t: [(float(rng.random() < 0.5), f"doc{d}") for d in range(10)]
            for t in ("zoo_math_mc_public", "zoo_math_gen_public")}
    _write(store, "zoo-off", "zoo_math", "public", rows, "acc", off=1e-6)
    want["zoo-off"] = None
    return store.path, want


def _old_copy(src: Path, dst: Path) -> Path:
    """The store as a v4 harness wrote it (no question columns), migrated by this harness on open."""
    from harness.store import Store
    from tests.factories import downgrade_store

    shutil.copy(src, dst)
    downgrade_store(dst, 4)
    Store(dst).counts()
    assert not _is_filled(dst) and all(v == (None, None, None) for v in _stored(dst).values())
    return dst


def test_a_killed_fill_resumes_and_ends_as_an_uninterrupted_fill(written, tmp_path: Path) -> None:
    from harness.run_questions import fill_question_stderr
    from harness.store import Store

    fresh, by_numpy = written
    at_write = _stored(fresh)
    for run_id, want in by_numpy.items():  # what finish_run stored is the formula, by numpy
        if want is None:
            assert at_write[run_id] == (None, None, None), run_id
        else:
            assert at_write[run_id][1:] == pytest.approx(want, rel=1e-12, abs=0), run_id

    whole = _old_copy(fresh, tmp_path / "whole.duckdb")
    assert fill_question_stderr(Store(whole)) == len(by_numpy)
    assert _is_filled(whole)
    uninterrupted = _stored(whole)

    killed = _old_copy(fresh, tmp_path / "killed.duckdb")
    done = subprocess.run([sys.executable, "-m", "tests.store_worker", "fill", str(killed), "4", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    print(done.stdout, done.stderr)
    assert done.returncode == -9, done.stderr  # killed by its SIGKILL after the third chunk
    part = _stored(killed)
    assert not _is_filled(killed), "a killed fill marked the store filled"
    filled = {r for r, v in part.items() if v != (None, None, None)}
    assert filled and filled < {r for r, w in by_numpy.items() if w is not None}  # some chunks kept, not all
    for run_id in filled:
        assert part[run_id] == uninterrupted[run_id]

    half_read = _board(killed)  # a read-only view of the half-filled store: the runs after the cursor computed
    assert fill_question_stderr(Store(killed)) > 0
    assert _is_filled(killed)
    resumed = _stored(killed)
    assert resumed == uninterrupted
    for run_id, want in by_numpy.items():
        got = resumed[run_id]
        if want is None:
            assert got == (None, None, None), run_id
        else:
            assert got[0] == ("acc" if run_id.startswith("zoo") else MGSM_METRIC)
            assert got[1:] == pytest.approx(want, rel=1e-12, abs=0), run_id
            assert got[1:] == pytest.approx(at_write[run_id][1:], rel=1e-12, abs=0), run_id
    assert fill_question_stderr(Store(killed)) == 0  # filled: one meta read
    assert half_read == _board(killed)


def _board(db: Path) -> dict[str, float]:
    """The suite scores' se of every run, as `harness leaderboard` reads them (questions named for unfilled runs)."""
    from harness.run_questions import run_questions
    from harness.store import Store
    from harness.store.frames import suite_scores
    from harness.suites import score_rules

    df = suite_scores(Store(db), rules=score_rules(), questions=run_questions)
    return dict(zip(df["run_id"], df["se"], strict=True))
