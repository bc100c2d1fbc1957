"""`harness eval M1 M2 M3 --suite mt_bench --judge J [--baseline B]` loads its judge (and its baseline) once for
every model, and stores what a one-model-at-a-time run stores, row by row."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

MODELS = ("zoo-math", "zoo-lang", "zoo-logic")
BASELINE = "zoo-overfit"  # the pairwise runs' baseline: a zoo model none of MODELS is
LOADS = "harness.evaluate.judge"  # the logger whose "loading ROLE NAME with BACKEND" line is each backend build


def _judged(zoo_family: Path, models: tuple[str, ...], store, baseline: str | None = None):
    """A judged eval through the library API `harness eval` calls, pairwise against `baseline` when given; greedy
    answers (--answer-temperature 0), so two runs of one model are comparable text for text."""
    from harness.evaluate.judge.evaluate import JudgeOptions
    from harness.evaluate.judge.rules import rules_from
    from harness.evaluate.options import eval_options
    from harness.workflows.evaluate import evaluate

    opts = eval_options(limit=2, device="cpu", dtype="float32", batch_size=8)
    judge = JudgeOptions(judge=str(zoo_family / "zoo-base"), limit=2, max_new_tokens=8, judge_max_new_tokens=8,
                         baseline=str(zoo_family / baseline) if baseline else None,
                         backend_options=opts.backend_options, rules=rules_from([], 0.0))
    return evaluate([str(zoo_family / m) for m in models], "mt_bench", opts, judge=judge, store=store).results


def _loads(caplog: pytest.LogCaptureFixture, role: str) -> int:
    return sum(r.name.startswith(LOADS) and r.getMessage().startswith(f"loading {role} ") for r in caplog.records)


def test_a_judged_eval_of_three_models_loads_the_judge_once(zoo_family: Path, store,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """The judge was built again for every model (3 builds of zoo-base for 3 models): now once, while each answering
    model is still built once (3), and every model's run completes."""
    with caplog.at_level(logging.INFO, logger=LOADS):
        results = _judged(zoo_family, MODELS, store)
    assert [store.get_run(r.run_id).status for r in results] == ["complete"] * 3
    assert _loads(caplog, "model") == 3
    assert _loads(caplog, "judge") == 1


def _stored(store) -> dict[str, tuple[str, dict, pd.DataFrame]]:
    """Each stored run: split, settings and its per-sample rows in a fixed order."""
    out = {}
    for run in store.list_runs(suite="mt_bench", status=None):
        rows = store.samples(run.run_id).sort_values(["doc_id", "metric"]).reset_index(drop=True)
        out[run.run_id] = (run.split, run.settings, rows)
    return out


def _cache(results: Path) -> dict[str, str]:
    with sqlite3.connect(results / "cache" / "judge.sqlite") as con:
        return dict(con.execute("SELECT key, value FROM kv").fetchall())


def _each_alone(zoo_family: Path, models: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                **judged: object) -> tuple[dict[str, tuple[str, dict, pd.DataFrame]], dict[str, str]]:
    """Each model judged alone, with its own store and cache (so nothing is read from another): the stored runs and
    the cache entries of all of them."""
    from harness.store import Store

    alone: dict[str, tuple[str, dict, pd.DataFrame]] = {}
    alone_cache: dict[str, str] = {}
    for m in models:
        own = tmp_path / f"alone-{m}"
        monkeypatch.setenv("HARNESS_RESULTS", str(own))
        monkeypatch.setenv("HARNESS_DB", str(own / "harness.duckdb"))
        one = Store(own / "harness.duckdb")
        one.init()
        _judged(zoo_family, (m,), one, **judged)
        alone.update(_stored(one))
        alone_cache.update(_cache(own))
    return alone, alone_cache


def test_three_models_judged_together_store_what_each_alone_stores(zoo_family: Path, results: Path, store,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging three models with one judge load gives the runs, rows and judge cache entries (keys and texts) of
    three separate runs, one model each, each with its own store and cache (so nothing is read from the other)."""
    together = _judged(zoo_family, MODELS, store)
    stored, cached = _stored(store), _cache(results)
    alone, alone_cache = _each_alone(zoo_family, MODELS, tmp_path, monkeypatch)
    assert sorted(stored) == sorted(alone) == sorted(r.run_id for r in together)
    for run_id, (split, settings, rows) in stored.items():
        assert split == alone[run_id][0] and settings == alone[run_id][1]
        want = alone[run_id][2]
        assert len(rows) == len(want) == 4  # two questions of two turns
        for i in range(len(rows)):  # NULL scores (unparsed judgments) compare equal here, as they should
            assert rows.iloc[i].equals(want.iloc[i]), (rows.iloc[i].to_dict(), want.iloc[i].to_dict())
    assert cached == alone_cache  # same keys, same answers and judgments


def test_a_judge_that_will_not_load_is_one_error_before_any_run(zoo_family: Path, results: Path,
                                                                tmp_path: Path) -> None:
    """A judge shared by every model that cannot load is reported once, in one line naming it the judge (it was
    three lines, one per model, each naming the model and not the judge), exit 2, nothing stored."""
    from harness.store import Store

    missing = tmp_path / "no-such-judge"
    args = [str(zoo_family / m) for m in MODELS] + ["--suite", "mt_bench", "--judge", str(missing), "--limit", "1",
                                                    "--device", "cpu", "--max-new-tokens", "4",
                                                    "--judge-max-new-tokens", "4"]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: judge: no model folder at {missing}: check the path"], proc.stderr
    assert "Traceback" not in proc.stderr
    db = results / "harness.duckdb"
    assert not db.exists() or Store(db).list_runs(suite="mt_bench", status=None) == []


def test_a_pairwise_eval_of_three_models_loads_the_baseline_once(zoo_family: Path, store,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The baseline of a pairwise run was built again for every model (3 builds of zoo-overfit for 3 models, with
    its answers already cached after the first): now once, as the judge, while each answering model is still built
    once (3), and every model's run is a complete pairwise run against that baseline."""
    with caplog.at_level(logging.INFO, logger=LOADS):
        results = _judged(zoo_family, MODELS, store, baseline=BASELINE)
    runs = [store.get_run(r.run_id) for r in results]
    assert [r.status for r in runs] == ["complete"] * 3
    assert {r.settings["mode"] for r in runs} == {"pairwise"}
    assert _loads(caplog, "model") == 3
    assert _loads(caplog, "baseline") == 1
    assert _loads(caplog, "judge") == 1


def test_two_models_judged_pairwise_together_store_what_each_alone_stores(zoo_family: Path, results: Path, store,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two models judged against one baseline loaded once give the runs, rows (both orders' judgments, the
    baseline's answers) and cache entries of two separate one-model runs, each with its own store and cache, so
    each of those made the baseline's answers itself."""
    models = MODELS[:2]
    together = _judged(zoo_family, models, store, baseline=BASELINE)
    stored, cached = _stored(store), _cache(results)
    alone, alone_cache = _each_alone(zoo_family, models, tmp_path, monkeypatch, baseline=BASELINE)
    assert sorted(stored) == sorted(alone) == sorted(r.run_id for r in together)
    for run_id, (split, settings, rows) in stored.items():
        assert split == alone[run_id][0] and split.startswith(f"test-vs-{BASELINE}-by-")
        assert settings == alone[run_id][1] and settings["mode"] == "pairwise"
        want = alone[run_id][2]
        assert len(rows) == len(want) == 4  # two questions of two turns
        assert set(rows["metric"]) == {"pairwise_turn1", "pairwise_turn2"}
        for i in range(len(rows)):
            assert rows.iloc[i].equals(want.iloc[i]), (rows.iloc[i].to_dict(), want.iloc[i].to_dict())
    # 2 models x 2 questions answered by each model and once by the baseline, plus 2 x 2 x 2 turns x 2 orders judged
    assert len(cached) == len(alone_cache) == 2 * 2 + 2 + 16
    assert cached == alone_cache


def test_a_baseline_that_will_not_load_is_one_error_before_any_model_is_judged(zoo_family: Path, results: Path,
                                                                               tmp_path: Path) -> None:
    """A baseline shared by every model that cannot load is reported once, in one line naming it the baseline (it
    was one line per model after that model had loaded), exit 2, no model's line, nothing stored."""
    from harness.store import Store

    missing = tmp_path / "no-such-baseline"
    args = [str(zoo_family / m) for m in MODELS] + ["--suite", "mt_bench", "--judge", str(zoo_family / "zoo-base"),
                                                    "--baseline", str(missing), "--limit", "1", "--device", "cpu",
                                                    "--max-new-tokens", "4", "--judge-max-new-tokens", "4"]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: baseline: no model folder at {missing}: check the path"], proc.stderr
    assert "judged by" not in proc.stderr and "Traceback" not in proc.stderr
    db = results / "harness.duckdb"
    assert not db.exists() or Store(db).list_runs(suite="mt_bench", status=None) == []
