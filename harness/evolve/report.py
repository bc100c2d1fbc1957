"""The end of a search: the best candidate materialised, evaluated through the evaluation runner (so its scores land
in the store like any run), and a selection row saying it was chosen on the fitness suites' search split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evolve import records

if TYPE_CHECKING:
    from harness.evolve.loop import Search
    from harness.store import Store


def eval_options(search: Search) -> Any:
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions

    cfg = search.cfg
    return EvalOptions(backend=cfg.backend, backend_options=BackendOptions(batch_size=cfg.batch_size, dtype=cfg.dtype))


def evaluate_best(search: Search, recipe: dict[str, Any], best: records.Candidate) -> str:
    """Materialise the best candidate and evaluate it; returns its folder."""
    from harness.evaluate.runner import evaluate_model
    from harness.evolve.fitness import load_suite, selected
    from harness.merge import merge_to_folder

    cfg, store = search.cfg, search.store
    res = merge_to_folder(recipe, seed=cfg.seed, store=store)
    if res.model_id != best.model_id:
        raise HarnessError(f"the materialised best candidate has id {res.model_id}, not {best.model_id}",
                           "report this as a bug (in-memory and folder merges disagree)")
    root = Path(search.suites_root) if search.suites_root else None
    opts = eval_options(search)
    for fs in cfg.fitness:
        suite = load_suite(fs.suite, root)
        evaluate_model(res.model_id, suite, opts, store, split=cfg.heldout_split,
                       tasks=tuple(t for t in suite.splits[cfg.heldout_split]
                                   if selected(t, cfg.heldout_split, fs.tasks)))
        evaluate_model(res.model_id, suite, opts, store, split=cfg.search_split, limit=cfg.limit,
                       tasks=tuple(t for t in suite.splits[cfg.search_split]
                                   if selected(t, cfg.search_split, fs.tasks)))
        records.add_selection(store, res.model_id, fs.suite, cfg.search_split, search.evolve_id)
    for ref in cfg.report_suites:
        name, _, split = ref.partition(":")
        evaluate_model(res.model_id, load_suite(name, root), opts, store, split=split or None)
    return str(res.path)


def final_runs(store: Store, model_id: str) -> list[dict[str, Any]]:
    """Every complete evaluation run of the model: suite, split and its scores with intervals."""
    out = []
    for run in store.list_runs(model_id=model_id):
        scores = [{"task": s.task, "metric": s.metric, "value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high,
                   "n": s.n} for s in store.scores(run.run_id)]
        out.append({"run_id": run.run_id, "suite": run.suite, "split": run.split, "scores": scores,
                    "limit": run.settings.get("limit")})
    return out


def compare(store: Store, models: dict[str, str], suite: Any, splits: list[str], backend: str = "hf",
            baseline: str | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
    """Evaluate models (label -> store ref or folder) on splits of a suite through the runner: per model and split,
    each task's score with its interval, the mean over tasks, and (against `baseline`) the paired difference of the
    per-item mean over tasks with its bootstrap interval."""
    from harness.analysis.stats import aggregate, paired_compare
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    opts = EvalOptions(backend=backend, backend_options=BackendOptions(batch_size=batch_size))
    items: dict[tuple[str, str], Any] = {}
    rows = []
    for split in splits:
        for label, ref in models.items():
            res = evaluate_model(ref, suite, opts, store, split=split)
            df = store.samples(res.run_id)
            main = df["metric"].str.split(",").str[0].isin(["acc", "exact_match"])  # 'exact_match,strip' too
            df = df[main] if main.any() else df
            per_task = {t: g.sort_values("doc_id")["score"].to_numpy() for t, g in df.groupby("task")}
            est = aggregate(per_task)
            items[(label, split)] = df.groupby("doc_id")["score"].mean().sort_index().to_numpy()
            row = {"model": label, "split": split, "mean": est.mean, "ci": (est.ci_low, est.ci_high),
                   "tasks": {s.task: (s.value, s.ci_low, s.ci_high) for s in res.scores if s.task != "_aggregate"}}
            rows.append(row)
    if baseline is not None:
        for row in rows:
            if row["model"] != baseline:
                d = paired_compare(items[(baseline, row["split"])], items[(row["model"], row["split"])])
                row["vs_" + baseline] = (d.mean_diff, d.ci_low, d.ci_high)
    return rows
