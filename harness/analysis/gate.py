"""The regression gate: is a candidate no worse than a baseline, task by task, on the same samples?

Per task the candidate and the baseline are paired on document ids. The difference (candidate - baseline) gets a
paired bootstrap interval and a p-value for "no difference": McNemar's exact test when both are 0/1 scores, a
paired t-test otherwise. p-values are Holm-corrected across the tasks. A task FAILS when its observed drop is
larger than its tolerance AND the Holm-corrected p-value is below alpha: a drop that is both practically and
statistically significant. For each task the gate also reports the minimum detectable effect (MDE) at 80% power
after correction, and says when the sample is too small to detect a drop of the tolerance at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

POWER = 0.8


@dataclass(frozen=True)
class TaskVerdict:
    task: str
    n: int
    baseline: float
    candidate: float
    diff: float  # candidate - baseline
    ci_low: float
    ci_high: float
    test: str  # mcnemar | paired-t | none
    p_value: float
    p_holm: float
    tolerance: float
    mde: float
    powered: bool  # True when a drop of `tolerance` is detectable (mde <= tolerance)
    failed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    alpha: float
    verdicts: list[TaskVerdict]
    missing: list[str]  # tasks of the baseline with no paired samples in the candidate

    @property
    def failed_tasks(self) -> list[str]:
        return [v.task for v in self.verdicts if v.failed]

    @property
    def underpowered_tasks(self) -> list[str]:
        return [v.task for v in self.verdicts if not v.powered]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def mde(base_scores: np.ndarray, diff: np.ndarray, alpha: float, n_tests: int) -> float:
    """Smallest true drop detectable with 80% power by a two-sided test at alpha / n_tests (Holm's first step).

    Uses the larger of the observed paired spread and sqrt(p(1-p)) of the baseline, so a candidate identical to
    the baseline (zero spread) does not claim to detect everything.
    """
    from scipy.stats import norm

    n = len(diff)
    if n < 2:
        return float("inf")
    sd = float(np.std(diff, ddof=1))
    p = float(np.clip(base_scores.mean(), 0.0, 1.0)) if np.all((base_scores >= 0) & (base_scores <= 1)) else None
    if p is not None:
        sd = max(sd, float(np.sqrt(p * (1 - p))))
    z = norm.ppf(1 - alpha / (2 * max(n_tests, 1))) + norm.ppf(POWER)
    return float(z * sd / np.sqrt(n))


def _p_value(a: np.ndarray, b: np.ndarray, mcnemar_p: float | None) -> tuple[str, float]:
    if mcnemar_p is not None:
        return "mcnemar", mcnemar_p
    diff = b - a
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return "none", 1.0 if np.allclose(diff, 0) else 0.0
    from scipy.stats import ttest_rel

    return "paired-t", float(ttest_rel(b, a).pvalue)


def compare(
    baseline: Mapping[str, Mapping[int, float]],
    candidate: Mapping[str, Mapping[int, float]],
    tolerance: float = 0.02,
    per_task_tolerance: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> GateResult:
    """Gate `candidate` against `baseline`: both map task -> {doc_id: score}."""
    from harness.stats import paired_compare

    per_task_tolerance = per_task_tolerance or {}
    tasks = [t for t in sorted(baseline) if set(baseline[t]) & set(candidate.get(t, {}))]
    missing = [t for t in sorted(baseline) if t not in tasks]
    rows = []
    for task in tasks:
        ids = sorted(set(baseline[task]) & set(candidate[task]))
        a = np.array([baseline[task][i] for i in ids], dtype=float)
        b = np.array([candidate[task][i] for i in ids], dtype=float)
        cmp = paired_compare(a, b, alpha=alpha, seed=seed)
        test, p = _p_value(a, b, cmp.mcnemar_p)
        rows.append((task, a, b, cmp, test, p))
    adjusted = holm([r[5] for r in rows])
    verdicts = []
    for (task, a, b, cmp, test, p), p_adj in zip(rows, adjusted, strict=True):
        tol = float(per_task_tolerance.get(task, tolerance))
        task_mde = mde(a, b - a, alpha, len(rows))
        failed = bool(cmp.mean_diff < -tol and p_adj < alpha)
        verdicts.append(TaskVerdict(
            task, cmp.n, cmp.mean_a, cmp.mean_b, cmp.mean_diff, cmp.ci_low, cmp.ci_high, test, p, p_adj, tol,
            task_mde, task_mde <= tol, failed,
        ))
    return GateResult(not any(v.failed for v in verdicts) and not missing, alpha, verdicts, missing)


def markdown_report(result: GateResult, title: str) -> str:
    """A pull-request comment: verdict first, then one row per task."""
    head = "PASSED" if result.passed else "FAILED"
    lines = [f"## {title}: {head}", ""]
    if result.failed_tasks:
        lines.append(f"Significant drops beyond tolerance: {', '.join(result.failed_tasks)}.")
    if result.missing:
        lines.append(f"Tasks missing from the candidate's run: {', '.join(result.missing)}.")
    if result.underpowered_tasks:
        lines.append(
            f"Too few samples to detect a drop of the tolerance in: {', '.join(result.underpowered_tasks)} "
            "(a pass there is not evidence of no regression)."
        )
    columns = ["task", "n", "baseline", "candidate", "diff", "95% CI", "test", "p", "p (Holm)", "tolerance", "MDE",
               "verdict"]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for v in result.verdicts:
        verdict = "FAIL" if v.failed else ("pass" if v.powered else "pass (underpowered)")
        lines.append(
            f"| {v.task} | {v.n} | {v.baseline:.3f} | {v.candidate:.3f} | {v.diff:+.3f} | "
            f"[{v.ci_low:+.3f}, {v.ci_high:+.3f}] | {v.test} | {v.p_value:.3g} | {v.p_holm:.3g} | "
            f"{v.tolerance:.3f} | {v.mde:.3f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
