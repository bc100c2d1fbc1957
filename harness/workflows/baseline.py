"""Release baselines: a committed JSON file with a model's per-sample scores on a suite and how they were made.

    results/baselines/NAME.json = {
        "format": 1, "name", "created", "model": {id, name}, "suite": {name, version, split, data_hash},
        "backend": {name, version}, "harness_version" (the run's), "run_id", "settings" (the run's score settings),
        "options" (what `harness check` needs to evaluate a candidate exactly alike),
        "tasks": {task: {"metric", "value", "n", "samples": {doc_id: score}, "doc_hashes": {doc_id: doc_hash}}}
    }

`doc_hashes` (lm-eval's hash of each document, as the store's samples hold it) lets the check see that its doc_id i
is the baseline's document i; files saved before it are read as before, paired by doc_id alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.paths import results_dir

FORMAT = 1


def baselines_dir() -> Path:
    return results_dir() / "baselines"


def baseline_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" or p.parent != Path("."):
        return p
    return baselines_dir() / f"{name_or_path}.json"


def primary_metric(metrics: list[str]) -> str:
    """A task's metric where the suite names none: the suite score's choice (PRIMARY_METRICS in their order, then
    by name: harness.store.frames.METRIC_ORDER), so a gate judges what the leaderboard shows."""
    from harness.store.frames import PRIMARY_METRICS

    rank = {m: i for i, m in enumerate(PRIMARY_METRICS)}
    return min(metrics, key=lambda m: (rank.get(m, len(PRIMARY_METRICS)), m))


def suite_metric(suite: str, split: str | None = None) -> str | None:
    """The metric the suite's score is on (suite.yaml `aggregate.metric`, or the split's own), so a gate judges
    what the leaderboard shows; None leaves each task's primary metric."""
    from harness.suites import score_rules

    rule = score_rules().get(suite)
    return rule.metric_for(split) if rule else None


def suite_weighs_by_size(suite: str) -> bool:
    """Whether the suite's score weighs its tasks by size (suite.yaml `aggregate.weight_by_size`, default true) or
    is the plain mean of its task means, so a gate's pooled difference is the leaderboard's."""
    from harness.suites import score_rules

    rule = score_rules().get(suite)
    return rule.weight_by_size if rule else True


def _metric_rows(samples: Any, metric: str | Mapping[str, str] | None) -> list[tuple[str, str, Any]]:
    """(task, metric, its rows) per task: `metric` (one for all, or per task: a baseline's), else the task's
    primary metric."""
    out = []
    for task, rows in samples.groupby("task"):
        named = metric.get(str(task)) if isinstance(metric, Mapping) else metric
        chosen = named or primary_metric(sorted(set(rows["metric"])))
        out.append((str(task), chosen, rows[rows["metric"] == chosen]))
    return out


def task_samples(samples: Any, metric: str | Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """A run's per-sample rows (DataFrame) -> {task: {metric, samples: {doc_id: score}, doc_hashes: {doc_id:
    doc_hash}}} on one metric per task (doc_hashes of the scored documents that have one)."""
    out: dict[str, dict[str, Any]] = {}
    for task, chosen, rows in _metric_rows(samples, metric):
        scores = {int(d): float(s) for d, s in zip(rows["doc_id"], rows["score"], strict=True) if s == s}
        hashes = {int(d): h for d, h in zip(rows["doc_id"], rows["doc_hash"], strict=True)
                  if int(d) in scores and isinstance(h, str)}
        if scores:
            out[str(task)] = {"metric": chosen, "samples": scores, "doc_hashes": hashes}
    return out


def questions(samples: Any, metric: str | Mapping[str, str] | None = None, suite: str | None = None,
              split: str | None = None) -> dict[str, dict[int, str]]:
    """A run's per-sample rows -> {task: {doc_id: question}}: the question each item poses (the gate's pooled test
    counts a question once): its doc_hash, the same where two tasks score the same document; with the run's `suite`
    (and `split`), the seed a twin map ties it to, or an item of the same doc_hash (harness/seed_questions.py: an
    MGSM problem's 11 languages, a GSM-Plus seed's 7 rewrites)."""
    from harness.seed_questions import question_keys

    out: dict[str, dict[int, str]] = {}
    hashes: dict[tuple[str, int], str | None] = {}
    for task, _, rows in _metric_rows(samples, metric):
        out[task] = {}
        hashes.update({(task, int(d)): h if isinstance(h, str) else None
                       for d, h in zip(rows["doc_id"], rows["doc_hash"], strict=True)})
    for (task, doc), key in question_keys(suite, split, hashes).items():
        out[task][doc] = key
    return out


def scores_by_task(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[int, float]]:
    return {t: {int(k): float(v) for k, v in d["samples"].items()} for t, d in tasks.items()}


def build_baseline(name: str, run: Any, model: Any, samples: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The baseline document for a complete run (RunRecord), its model (ModelRecord) and its samples; its
    harness_version is the run's, the harness its scores came from (a reused run may be older than this one)."""
    tasks = task_samples(samples, suite_metric(run.suite, run.split))
    for d in tasks.values():
        vals = list(d["samples"].values())
        d["value"], d["n"] = sum(vals) / len(vals), len(vals)
    return {
        "format": FORMAT, "name": name, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"id": model.model_id, "name": model.name},
        "suite": {"name": run.suite, "version": run.suite_version, "split": run.split, "data_hash": run.data_hash},
        "backend": {"name": run.backend, "version": run.backend_version},
        "harness_version": run.harness_version, "run_id": run.run_id,
        "settings": {k: v for k, v in run.settings.items() if k not in ("device", "base_url")},
        "options": options, "tasks": tasks,
    }


def write_baseline(doc: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_baseline(name_or_path: str) -> dict[str, Any]:
    path = baseline_path(name_or_path)
    if not path.is_file():
        raise HarnessError(
            f"no baseline file {path}", "create it with harness baseline save MODEL --suite S --name NAME"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path} is not valid JSON (line {exc.lineno})", "restore it from version control") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("tasks"), dict):
        raise HarnessError(
            f"{path} is not a harness baseline (format {FORMAT})", "save it again with harness baseline save"
        )
    for task, d in doc["tasks"].items():
        problem = _samples_problem(d)
        if problem:
            raise HarnessError(f"{path}: task {task!r} {problem}", "restore it from version control or save it again")
    return doc


def _samples_problem(task: Any) -> str | None:
    """What is wrong with a baseline task's per-sample scores ({doc_id: number}), or None."""
    samples = task.get("samples") if isinstance(task, dict) else None
    if not isinstance(samples, dict) or not samples:
        return "has no per-sample scores"
    for k, v in samples.items():
        if not str(k).isdigit():
            return f"has document id {k!r}, not a number"
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            return f"document {k} has score {v!r}, not a number"
    hashes = task.get("doc_hashes", {})
    if not isinstance(hashes, dict):
        return f"has doc_hashes {hashes!r}, not a mapping of document ids to hashes"
    for k, h in hashes.items():
        if not str(k).isdigit() or not isinstance(h, str):
            return f"document {k} has doc_hash {h!r}, not a hash"
    return None


def options_dict(opts: Any) -> dict[str, Any]:
    """EvalOptions -> JSON (the fields a candidate must share with its baseline)."""
    d = asdict(opts)
    bo = d.pop("backend_options")
    keep = ("batch_size", "dtype", "max_length", "add_bos_token", "trust_remote_code", "chat")
    return {"split": d["split"], "backend": d["backend"], "limit": d["limit"], "tier": d["tier"],
            "tasks": list(d["tasks"]) if d["tasks"] else None, "seed": d["seed"],
            "backend_options": {k: bo[k] for k in keep}}


def options_from(d: dict[str, Any], device: str | None = None, base_url: str | None = None) -> Any:
    from harness.evaluate.options import stored_options

    return stored_options(d, device=device, base_url=base_url)
