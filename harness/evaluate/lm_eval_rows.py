"""lm-eval's results and logged samples -> the store's Score and Sample rows, with our intervals.

The score value and lm-eval's stderr are taken as lm-eval computed them; the bootstrap interval comes from the
per-sample scores (harness.stats). A suite-level row (task "_aggregate") holds the macro mean over the
tasks that share a metric.
"""

from __future__ import annotations

import math
from typing import Any

from harness.stats import aggregate, summarize
from harness.store.records import AGGREGATE_TASK, Sample, Score

__all__ = ["AGGREGATE_TASK", "sample_rows", "to_records"]
_SKIP = {"alias", "name", "sample_len", " "}


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _metric_name(metric: str, filt: str) -> str:
    return metric if filt == "none" else f"{metric},{filt}"


def _prediction(resps: list[Any]) -> tuple[str | None, dict[str, Any]]:
    if resps and all(isinstance(r, (tuple, list)) and len(r) == 2 for r in resps):
        lls = [float(r[0]) for r in resps]
        if len(lls) == 1:
            return None, {"loglikelihood": lls[0], "is_greedy": bool(resps[0][1])}
        return str(max(range(len(lls)), key=lls.__getitem__)), {"loglikelihoods": lls}
    if len(resps) == 1 and isinstance(resps[0], str):
        return resps[0], {}
    if len(resps) == 1 and _num(resps[0]) is not None:
        return None, {"loglikelihood": float(resps[0])}
    return None, {"resps": [str(r) for r in resps]}


def sample_rows(task: str, logged: list[dict[str, Any]]) -> tuple[list[Sample], dict[str, list[float]]]:
    """Per-sample rows and, per metric, the numeric per-sample scores (for intervals)."""
    rows: list[Sample] = []
    per_metric: dict[str, list[float]] = {}
    for s in logged:
        prediction, extra = _prediction(list(s.get("filtered_resps") or []))
        args = s.get("arguments") or []
        prompt = str(args[0][0]) if args and isinstance(args[0], (tuple, list)) and args[0] else None
        filt = s.get("filter", "none")
        for metric in s.get("metrics", []):
            name = _metric_name(metric, filt)
            score = _num(s.get(metric))
            if score is not None:
                per_metric.setdefault(name, []).append(score)
            rows.append(Sample(
                task=task, doc_id=int(s["doc_id"]), metric=name, score=score, prediction=prediction,
                target=str(s.get("target")), prompt=prompt, doc_hash=s.get("doc_hash"),
                prompt_hash=s.get("prompt_hash"), target_hash=s.get("target_hash"), extra=extra,
            ))
    return rows, per_metric


def to_records(results: dict[str, Any], seed: int = 0) -> tuple[list[Score], list[Sample]]:
    scores: list[Score] = []
    samples: list[Sample] = []
    per_task_metric: dict[str, dict[str, list[float]]] = {}
    logged = results.get("samples") or {}
    for task, metrics in results["results"].items():
        if task not in logged:  # a group row, not a task
            continue
        rows, per_metric = sample_rows(task, logged[task])
        samples += rows
        for key, value in metrics.items():
            if key in _SKIP or "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            name = _metric_name(metric, filt)
            values = per_metric.get(name, [])
            est = summarize(values, seed=seed) if values else None
            stderr = _num(metrics.get(f"{metric}_stderr,{filt}"))
            scores.append(Score(
                task=task, metric=name, value=_num(value),
                stderr=stderr if stderr is not None else (est.stderr if est else None),
                n=len(values) or int(metrics.get("sample_len") or 0) or None,
                ci_low=est.ci_low if est else None, ci_high=est.ci_high if est else None,
            ))
            if values:
                per_task_metric.setdefault(name, {})[task] = values
    for name, by_task in sorted(per_task_metric.items()):
        est = aggregate(by_task, seed=seed)
        scores.append(Score(AGGREGATE_TASK, name, est.mean, est.stderr, est.n, est.ci_low, est.ci_high))
    return scores, samples
