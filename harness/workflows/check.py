"""`harness baseline save` and `harness check`: evaluate, pair, gate, report, record.

The candidate is evaluated with the baseline's exact options (split, limit, tasks, backend, batch size, dtype,
seed). A baseline made from another suite version or other data, or with other settings, is refused unless the
user allows the mismatch. A passed check is recorded in the store, and (unless told otherwise) as a selection
event: the candidate was chosen for release on this suite, which the overfitting analysis then knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.analysis.gate import GateResult, compare, markdown_report
from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.store import Store
from harness.workflows.baseline import (
    baseline_path,
    baselines_dir,
    build_baseline,
    options_dict,
    options_from,
    questions,
    read_baseline,
    scores_by_task,
    suite_metric,
    suite_weighs_by_size,
    task_samples,
    write_baseline,
)
from harness.workflows.check_mismatches import Mismatch, other_contents, other_documents, run_mismatches


@dataclass(frozen=True)
class CheckOutcome:
    check_id: str
    candidate: str
    baseline: str
    suite: str
    result: GateResult
    candidate_run: str
    report: str  # Markdown
    engines_changed: str | None = None  # the baseline's engines -> the candidate's, where they differ
    mismatches: tuple[Mismatch, ...] = ()  # what --allow-mismatch let through: the gate compared what is common

    def to_dict(self) -> dict[str, Any]:
        return {
            "check_id": self.check_id, "candidate": self.candidate, "baseline": self.baseline, "suite": self.suite,
            "passed": self.result.passed, "alpha": self.result.alpha, "failed_tasks": self.result.failed_tasks,
            "underpowered_tasks": self.result.underpowered_tasks, "missing_tasks": self.result.missing,
            "candidate_run": self.candidate_run, "tasks": [v.to_dict() for v in self.result.verdicts],
            "pooled": self.result.pooled.to_dict() if self.result.pooled else None,
            "interval_level": self.result.level, "engines_changed": self.engines_changed,
            "mismatches": [m.to_dict() for m in self.mismatches],
        }


def _evaluate(model: str, suite: str, opts: Any, store: Store, merge_seed: int = 0) -> tuple[Any, Any]:
    """Evaluate `model` (a recipe merged with `merge_seed`, as `harness merge --seed`): its result and run record."""
    from harness.evaluate.runner import evaluate_model
    from harness.workflows.evaluate import materialise

    res = evaluate_model(materialise(model, store, merge_seed), suite, opts, store)
    run = store.get_run(res.run_id)
    return res, run


def require_gate_backend(backend: str) -> None:
    """A baseline file keeps no endpoint and check scores the candidate with the file's options: a baseline
    scored through an OpenAI-compatible server could never be checked, so none is made."""
    if backend == "openai":
        raise HarnessError("baseline save and check do not support the openai backend (they take no endpoint, "
                           "so a baseline made through one could not be checked)",
                           "use --backend hf or vllm on the model folder")


def save_baseline(model: str, suite: str, name: str, opts: Any, store: Store, force: bool = False,
                  merge_seed: int = 0) -> Path:
    """Evaluate (or reuse) `model` (a recipe: merged with `merge_seed`) on `suite` and write
    results/baselines/NAME.json. `name` is a name, never a path; an existing file is replaced only with `force`
    (both checked before any evaluation)."""
    from harness.names import check_name

    require_gate_backend(opts.backend)
    path = baselines_dir() / f"{check_name(name)}.json"
    if path.exists() and not force:
        raise HarnessError(f"baseline {name!r} exists ({path})", "pass --force to replace it, or another --name")
    res, run = _evaluate(model, suite, opts, store, merge_seed)
    doc = build_baseline(name, run, store.get_model(res.model_id), store.samples(res.run_id), options_dict(opts))
    return write_baseline(doc, path)


def _baseline_doc(baseline: str, suite: str, opts: Any, store: Store) -> dict[str, Any]:
    """A baseline file by name or path; otherwise a model to evaluate now with `opts`."""
    path = baseline_path(baseline)
    if path.is_file():
        return read_baseline(baseline)
    if store.find_model(baseline) is None and not Path(baseline).is_dir():
        raise HarnessError(f"{baseline!r} is neither a baseline file ({path}) nor a model",
                           "pass a baseline name saved with harness baseline save, or a model")
    res, run = _evaluate(baseline, suite, opts, store)
    return build_baseline(baseline, run, store.get_model(res.model_id), store.samples(res.run_id), options_dict(opts))


def engine_changes(before: str | None, after: str | None) -> str | None:
    """What changed between two runs' engines (their backend versions, 'lm_eval 0.4.13; transformers 4.57.1, torch
    2.8.0'): each engine whose version differs, 'transformers 4.57.1 -> 5.0.0'; None when alike. An engine the
    baseline does not name was not recorded then (lm_eval, before backend versions named it)."""
    if (before or None) == (after or None):
        return None
    if not before or not after:
        return f"{before or 'not recorded'} -> {after or 'not recorded'}"
    old, new = (dict(re.findall(r"([A-Za-z][\w.-]*) (\d[\w.+-]*)", v)) for v in (before, after))
    names = [*old, *(k for k in new if k not in old)]
    changed = [f"{k} {old.get(k, '(not recorded)')} -> {new.get(k, '(none)')}" for k in names
               if old.get(k) != new.get(k)]
    return ", ".join(changed) or f"{before!r} -> {after!r}"


def _engines_changed(doc: dict[str, Any], run: Any) -> str | None:
    """The baseline file's harness and engines -> the candidate run's, where they differ ('harness 0.1.0 -> 0.2.0,
    transformers 4.57.1 -> 5.0.0'); None when alike."""
    then, now = doc.get("harness_version"), run.harness_version
    changes = (engine_changes(then and f"harness {then}", now and f"harness {now}"),
               engine_changes(doc.get("backend", {}).get("version"), run.backend_version))
    return ", ".join(c for c in changes if c) or None


def run_check(
    candidate: str, baseline: str, suite: str | None, store: Store, opts: Any | None = None,
    tolerance: float = 0.02, per_task: dict[str, float] | None = None, alpha: float = 0.05,
    allow_mismatch: bool = False, promote: bool = True, device: str | None = None, suite_tolerance: float = 0.01,
    merge_seed: int = 0,
) -> CheckOutcome:
    """Gate `candidate` (a recipe: merged with `merge_seed`) against a baseline file (or a baseline model evaluated
    with `opts`)."""
    from harness.evaluate.options import eval_options

    store.init()
    if baseline_path(baseline).is_file():
        doc = read_baseline(baseline)
        suite = suite or doc["suite"]["name"]
        if suite != doc["suite"]["name"]:
            raise HarnessError(f"baseline {baseline!r} is for suite {doc['suite']['name']!r}, not {suite!r}",
                               f"pass --suite {doc['suite']['name']} or another baseline")
        opts = options_from(doc["options"], device=device)
    else:
        if suite is None:
            raise HarnessError("--suite is required when the baseline is a model", "add --suite NAME")
        opts = opts or eval_options()
        doc = _baseline_doc(baseline, suite, opts, store)
    _check_suite_now(doc, suite, allow_mismatch)
    res, run = _evaluate(candidate, suite, replace(opts, rerun=False), store, merge_seed)
    samples = store.samples(res.run_id)  # each task on the baseline's metric: like with like, whatever rule made it
    metric = {t: d["metric"] for t, d in doc["tasks"].items() if d.get("metric")} or suite_metric(suite, run.split)
    cand = task_samples(samples, metric)
    mismatches = run_mismatches(doc, run) + other_documents(doc, cand) + other_contents(doc, cand)
    if mismatches and not allow_mismatch:
        raise HarnessError(f"the candidate's run differs from the baseline: {mismatches[0].refusal}",
                           "re-save the baseline with the current suite and settings, or pass --allow-mismatch")
    result = compare(scores_by_task(doc["tasks"]), {t: d["samples"] for t, d in cand.items()},
                     tolerance=tolerance, per_task_tolerance=per_task, alpha=alpha, suite_tolerance=suite_tolerance,
                     clusters=questions(samples, metric, suite, run.split),
                     weight_by_size=suite_weighs_by_size(suite))
    check_id = "c" + hash_json({"candidate": res.model_id, "baseline": doc["run_id"], "tol": tolerance,
                                "per_task": per_task, "alpha": alpha, "suite_tol": suite_tolerance})[:19]
    title = f"harness check: {res.model_name} vs {doc['name']} on {suite}"
    engines = _engines_changed(doc, run)
    notes = [f"engines differ: {engines} (baseline -> candidate); scores can move with them: re-save the "
             "baseline under the candidate's engines to compare like with like."] if engines else []
    if mismatches:
        notes.append(f"Compared in part: {len(mismatches)} mismatch{'es' if len(mismatches) > 1 else ''} with the "
                     "baseline allowed (--allow-mismatch):")
        notes += [f"- {m.allowed}" for m in mismatches] + [""]
    report = markdown_report(result, title, notes, partial=bool(mismatches))
    outcome = CheckOutcome(check_id, res.model_id, doc["name"], suite, result, res.run_id, report, engines,
                           tuple(mismatches))
    store.add_check(check_id, res.model_id, doc["name"], suite, result.passed, outcome.to_dict())
    if result.passed and promote:
        store.select(res.model_id, suite, "check", split=run.split, process_id=check_id,
                     note=f"passed the gate against {doc['name']}")
    return outcome


def _check_suite_now(doc: dict[str, Any], suite: str, allow_mismatch: bool) -> None:
    """Refuse early when the suite on disk is not the one the baseline was made from."""
    from harness.suites import load_suite

    now = load_suite(suite)
    want = doc["suite"]
    if allow_mismatch:
        return
    if str(want["version"]) != str(now.version):
        raise HarnessError(
            f"baseline {doc['name']!r} was made with {suite} version {want['version']}, the suite is now "
            f"version {now.version}", "re-save the baseline (harness baseline save) or pass --allow-mismatch")
    if want.get("data_hash") and want["data_hash"] != now.data_hash(
            want.get("split") if want.get("split") in now.splits else None):
        raise HarnessError(f"baseline {doc['name']!r} was made from other {suite} data (data hash differs)",
                           "re-save the baseline (harness baseline save) or pass --allow-mismatch")
