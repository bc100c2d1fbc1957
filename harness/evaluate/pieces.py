"""One run's suite split cut into pieces (groups of its tasks) that separate engines evaluate, and their lm-eval
outputs joined back into the output one engine would have given (`harness eval --workers N`, docs/eval.md).

    plans = split_plan(plan, 4)                    # <= 4 plans, each a group of the plan's tasks, in plan order
    out = merge_outputs(plan, [lm_eval_results(target, p, ...) for p in plans])
    record_results(target, run, out, store)        # the runner's own rows: scores, `_aggregate`, samples

Why joining is exact: a task's lm-eval results (value, stderr) and logged samples depend on that task alone (its
documents, its few-shot seed, its bootstrap), and every row the store keeps is computed from them afterwards by
`lm_eval_rows.to_records` (per-task intervals, the `_aggregate` macro mean over all tasks, the samples); the suite
score (store/frames.py) is computed from the stored per-task rows. So the joined results give the same rows.
A task group lm-eval itself aggregates (a `--hub` run names lm-eval groups such as `mmlu`, whose group score is
the size-weighted mean of its subtasks with a pooled stderr, lm_eval.api.metrics.aggregate_subtask_metrics) is
never cut: a `--hub` plan is one piece. Groups are balanced by document count (the evaluated split's rows, capped
by the limit; a tier's paired sample counts its documents), largest task first into the lightest group.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evaluate.plan import HUB_SPLIT, Plan, data_files, task_configs

if TYPE_CHECKING:
    from harness.evaluate.lm_eval_run import LmEvalOutput

SORTED_KEYS = ("configs", "versions", "n-shot", "higher_is_better")  # lm-eval writes these in name order


def split_plan(plan: Plan, n: int, docs: dict[str, int] | None = None) -> list[Plan]:
    """At most n plans whose tasks together are the plan's, balanced by documents (`docs`: task_docs(plan), for a
    caller cutting several runs of one plan); [plan] when it can't be cut."""
    if n <= 1 or len(plan.tasks) < 2 or plan.split == HUB_SPLIT:
        return [plan]
    docs = docs or task_docs(plan)
    order = {t: k for k, t in enumerate(plan.tasks)}
    groups: list[list[str]] = [[] for _ in range(min(n, len(plan.tasks)))]
    loads = [0] * len(groups)
    for task in sorted(plan.tasks, key=lambda t: (-docs[t], order[t])):
        lightest = min(range(len(groups)), key=lambda g: (loads[g], g))
        groups[lightest].append(task)
        loads[lightest] += docs[task]
    groups.sort(key=lambda g: min(order[t] for t in g))
    return [piece(plan, sorted(g, key=order.__getitem__)) for g in groups]


def piece(plan: Plan, tasks: list[str]) -> Plan:
    samples = tuple((t, d) for t, d in plan.samples if t in tasks) if plan.samples else None
    return replace(plan, tasks=tuple(tasks), samples=samples)


def task_docs(plan: Plan) -> dict[str, int]:
    """Documents each task of the plan evaluates: a paired sample's, else its test rows capped by the limit."""
    if plan.samples:
        return {t: len(d) for t, d in plan.samples}
    try:
        configs = task_configs(plan)
    except HarnessError:  # a missing data file: the run fails on it (and is recorded failed) in its piece
        configs = []
    rows = {c["task"]: _rows(c) for c in configs if isinstance(c, dict)}
    known = sorted(n for n in rows.values() if n is not None)
    fallback = plan.limit or (known[len(known) // 2] if known else 1)
    out = {}
    for task in plan.tasks:
        n = rows.get(task)
        out[task] = fallback if n is None else (min(n, plan.limit) if plan.limit else n)
    return out


def _rows(config: dict[str, Any]) -> int | None:
    """Rows of the task's evaluated split in its data files (None: not a local file we can count)."""
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    split = config.get("test_split") or "test"
    if isinstance(files, dict):
        files = files.get(split)
        paths = [Path(f) for f in (files if isinstance(files, (list, tuple)) else [files])] if files else []
    else:
        paths = data_files(config)
    if not paths or not all(p.is_file() for p in paths):
        return None
    counts = [_count(p, config) for p in paths]
    return None if None in counts else sum(c for c in counts if c is not None)


def _count(path: Path, config: dict[str, Any]) -> int | None:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if suffix == ".json":
        data = json.loads(path.read_text())
        return len(data) if isinstance(data, list) else None
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        named = bool((config.get("dataset_kwargs") or {}).get("column_names"))
        return len(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", header=None if named else "infer",
                               keep_default_na=False, dtype=str))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def merge_outputs(plan: Plan, outputs: list[LmEvalOutput]) -> LmEvalOutput:
    """The pieces' lm-eval outputs as one: per-task entries joined (in the plan's task order, or lm-eval's name
    order where it sorts), the rest (model config, versions, date) from the first piece; request counts summed,
    each piece's cut counts (its own tasks) joined."""
    from harness.evaluate.lm_eval_run import LmEvalOutput

    if len(outputs) == 1:
        return outputs[0]
    first = outputs[0].results
    order = {t: k for k, t in enumerate(plan.tasks)}
    results: dict[str, Any] = {}
    for key, value in first.items():
        if not isinstance(value, dict) or key == "config":
            results[key] = value
            continue
        joined: dict[str, Any] = {}
        for out in outputs:
            joined.update(out.results.get(key) or {})
        names = sorted(joined) if key in SORTED_KEYS else sorted(joined, key=lambda t: (order.get(t, len(order)), t))
        results[key] = {t: joined[t] for t in names}
    return LmEvalOutput(results, outputs[0].config, sum(o.hits for o in outputs), sum(o.misses for o in outputs),
                        sum(o.planned for o in outputs), tuple(c for o in outputs for c in o.cuts))
