"""results/runs/<run-id>/: lm-eval's own files (results_*.json, samples_<task>_*.jsonl, as its
EvaluationTracker writes them) plus harness.json (provenance and scores with intervals). Written into a
temporary folder and renamed into place, so a reader never sees half a run."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import replace_dir
from harness.errors import HarnessError
from harness.paths import results_dir

if TYPE_CHECKING:
    from lm_eval.loggers import EvaluationTracker

    from harness.store.records import RunRecord, Score


def runs_dir() -> Path:
    return results_dir() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id


def write_run_dir(
    run: RunRecord, results: dict[str, Any], scores: list[Score], tracker: EvaluationTracker
) -> Path:
    """Write lm-eval's results and samples through its tracker, then harness.json; atomically."""
    final = run_dir(run.run_id)
    tmp = final.with_name(f".{run.run_id}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tracker.output_path = str(tmp)
        samples = results.pop("samples", {})
        tracker.save_results_aggregated(results=results, samples=samples)
        for task, rows in samples.items():
            tracker.save_results_samples(task_name=task, samples=rows)
        results["samples"] = samples
        for f in list(tmp.rglob("*.json*")):  # the tracker nests files under the model name: flatten
            if f.parent != tmp:
                f.replace(tmp / f.name)
        for d in sorted((d for d in tmp.rglob("*") if d.is_dir()), reverse=True):
            d.rmdir()
        if not list(tmp.glob("results_*.json")):
            raise HarnessError(f"lm-eval did not write its results file for run {run.run_id}",
                               "check free disk space and permissions under results/")
        meta = {"run": {**asdict(run), "started": None, "ended": None},
                "scores": [asdict(s) for s in scores]}
        (tmp / "harness.json").write_text(json.dumps(meta, indent=2, default=str))
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_run_dir(run_id: str) -> dict[str, Any]:
    """harness.json of a run, plus lm-eval's results json under "lm_eval"."""
    folder = run_dir(run_id)
    meta = json.loads((folder / "harness.json").read_text())
    files = sorted(folder.glob("results_*.json"))
    meta["lm_eval"] = json.loads(files[-1].read_text()) if files else None
    return meta
