"""The same store gives the same output, byte for byte, in every process: rows in a meaningful order, never in the
order DuckDB's parallel hash aggregation or Python's string hashing (PYTHONHASHSEED) happens to leave them.

The store is benchmarks/gen_store.py's at 2,000 models (2 s to write): the smallest where DuckDB's parallel
aggregation was seen to return the suite scores in another order from one read to the next (at 1,400 models one read
in eight; at 700 and below, never in eight processes). The rows' order moved the reference line's sums, so a p-value
changed in its last digits between two `harness overfit --json` of one store (4.614110900456498e-06 and ...484e-06).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gen_store import build

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ("0", "1", "2", "3", "4")  # five processes: of the old `overfit --json`s, two in three differed somewhere


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("order") / "s.duckdb"
    build(path, models=2000, docs=67)
    return path


def _outputs(db: Path, *args: str, processes: int = len(SEEDS)) -> list[bytes]:
    """`harness --db DB ARGS` in one fresh process per PYTHONHASHSEED (DuckDB's default threads: one per core):
    each one's stdout."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("DuckDB parallelises only with more than one core")
    outs = []
    for seed in SEEDS[:processes]:
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "harness.cli", "--db", str(db), *args], capture_output=True,
                              env=env, cwd=ROOT, timeout=300, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        outs.append(done.stdout)
    return outs


@pytest.mark.parametrize(("args", "processes"), [
    (("overfit", "--json", "--coverage", "--min-severity", "info"), 5),
    (("leaderboard", "--json"), 3),
    (("lineage", "creep-4", "--json"), 2),
    (("models", "--json"), 2),
], ids=["overfit", "leaderboard", "lineage", "models"])
def test_the_same_store_prints_the_same_bytes_in_every_process(big_store: Path, args: tuple[str, ...],
                                                              processes: int) -> None:
    outs = _outputs(big_store, *args, processes=processes)
    assert len(outs[0]) > 100
    for seed, out in zip(SEEDS[1:], outs[1:], strict=False):
        assert out == outs[0], f"PYTHONHASHSEED={seed} printed other bytes than PYTHONHASHSEED={SEEDS[0]}"


def test_gathered_rows_come_sorted_by_model_suite_and_split(big_store: Path) -> None:
    """The suite scores sorted by (model_id, suite, split) and the twin gaps by (suite, twin kind, model_id), as
    pandas sorts them; read three times in one process, the frames are equal to the last bit."""
    import pandas as pd

    from harness.analysis.evidence import gather
    from harness.store import Store

    reads = [gather(Store(big_store)) for _ in range(3)]
    scores, gaps = reads[0].scores, reads[0].gaps
    assert len(scores) == 2000 * 6  # each model's 6 runs (gen_store.SUITES' splits), one suite score each
    by_key = scores.sort_values(["model_id", "suite", "split"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(scores, by_key)
    gaps_by_key = gaps.sort_values(["suite", "kind", "model_id"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(gaps, gaps_by_key)
    assert len(gaps) > 2000
    for later in reads[1:]:
        pd.testing.assert_frame_equal(later.scores, scores, check_exact=True)
        pd.testing.assert_frame_equal(later.gaps, gaps, check_exact=True)


WIDE_TASKS = 57  # as many tasks as MMLU's


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple[str, float, int]]]]:
    """30 models, each with one run of 57 tasks written by Store.finish_run (4 s): the smallest where the old read
    summed a run's tasks in another order from one read to the next (2 bit patterns in 10 reads, in every try).
    Returns the store and each run's (task, value, n) rows."""
    import numpy as np

    from harness.store import ModelRecord, RunRecord, Score, Store

    path = tmp_path_factory.mktemp("wide") / "s.duckdb"
    store, rng, written = Store(path), np.random.default_rng(7), {}
    for i in range(30):
        model_id = f"{i:02d}" + "ab" * 31
        store.add_model(ModelRecord(model_id, f"wide-{i:02d}", None, "source"))
        store.start_run(RunRecord(f"run-{i:02d}", model_id, "wide", "hf", "0"))
        n = rng.integers(50, 300, WIDE_TASKS)
        rows = [(f"task_{j:02d}", float(rng.integers(0, n[j]) / n[j]), int(n[j])) for j in range(WIDE_TASKS)]
        store.finish_run(f"run-{i:02d}", [Score(t, "acc", v, math.sqrt(v * (1 - v) / (k - 1)), k) for t, v, k in rows],
                         [])
        written[f"run-{i:02d}"] = rows
    return path, written


def test_a_suite_score_sums_its_tasks_in_the_same_order_on_every_read(wide_store) -> None:
    """A run's size-weighted mean and pooled stderr, read ten times, are the same bits each time: those of the sums
    taken in task order, as Python takes them here (lm-eval's pooled_sample_stderr for the stderr)."""
    from harness.store import Store
    from harness.store import frames as views

    path, written = wide_store
    reads = [views.suite_scores(Store(path), {}, rules={}) for _ in range(10)]
    first = reads[0].set_index("run_id")
    for run_id, rows in written.items():
        vn, sn = sum(v * k for _t, v, k in rows), sum(k for _t, _v, k in rows)
        q = sum((k - 1) * k * (v * (1 - v) / (k - 1)) for _t, v, k in rows)
        assert first.loc[run_id, "value"] == vn / sn  # the same bits: summed in task order
        assert first.loc[run_id, "se"] == pytest.approx(math.sqrt(q / (sn - WIDE_TASKS) / sn), rel=1e-9)
    for later in reads[1:]:
        assert later["run_id"].tolist() == reads[0]["run_id"].tolist()
        assert later["value"].to_numpy().tobytes() == reads[0]["value"].to_numpy().tobytes()
        assert later["se"].to_numpy().tobytes() == reads[0]["se"].to_numpy().tobytes()


def test_the_leaderboard_of_many_task_runs_prints_the_same_bytes_in_every_process(wide_store) -> None:
    path, _written = wide_store
    outs = _outputs(path, "leaderboard", "--json", processes=3)
    assert b"wide-29" in outs[0]
    assert outs[1:] == outs[:1] * 2
