"""The regression gate: is a candidate no worse than a baseline, task by task and over the whole suite?

Per task the candidate and the baseline are paired on document ids (the same task, the same documents). The
difference (candidate - baseline) gets a paired t interval at level 1 - alpha and a p-value for "no
difference": McNemar's exact test when both are 0/1 scores, a paired t-test otherwise (a constant difference: the
exact sign-flip p-value 2^(1-n), so one or two items never give p = 0). Besides the per-task tests, a pooled test
over all items of the suite, stratified by task (the item-weighted mean difference with the within-task variance;
exact McNemar on the pooled discordant pairs for 0/1 scores), catches a small drop spread over many tasks (57 MMLU
subjects each 1.5 points down); on a suite whose score is the plain mean of its task means (weight_by_size: false)
each item weighs 1 / (k n_t) (task_weights), so the pooled difference is the leaderboard's. p-values are
Holm-corrected across the tasks and the pooled test together. A task FAILS when its drop is larger than its
tolerance AND its Holm p-value is below alpha; the suite FAILS when the pooled drop is larger than
`suite_tolerance` AND its Holm p-value is below alpha. When some tasks pose the same questions
(zoo_math's multiple choice and generation score the same documents; MGSM asks a problem in 11 languages:
`clusters` names each item's question, the samples' doc_hash or the seed a twin map ties it to,
harness/seed_questions.py), the pooled test counts each question once: a sign-flip test of the per-question sums of the
differences (exact up to 16 questions that differ, else 20,000 seeded flips), with a stderr clustered by question;
an item alone in its cluster makes it McNemar's test again. Each test reports its minimum detectable
effect (MDE) at 80% power after correction, from the observed discordance (0/1 scores: the rate of discordant
pairs, at least 3/n, the rule-of-three bound when none is seen) or the observed spread of the differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


POOLED = "(all tasks, pooled)"


@dataclass(frozen=True)
class GateResult:
    passed: bool
    alpha: float
    verdicts: list[TaskVerdict]
    missing: list[str]  # tasks of the baseline with no paired samples in the candidate
    pooled: TaskVerdict | None = None  # the stratified test over all items (task = POOLED)

    @property
    def level(self) -> str:
        """The intervals' level, as their labels say it (1 - alpha)."""
        return f"{100 * (1 - self.alpha):g}%"

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


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def diff_sd(a: np.ndarray, b: np.ndarray) -> float:
    """The per-item sd of b - a that the MDE assumes: 0/1 scores from the observed discordance rate (at least
    3/n, the rule-of-three bound when no pair is discordant), else the observed sd of the differences (at least
    that of the baseline's scores times sqrt(3/n), for the same reason)."""
    n = len(a)
    if _binary(a) and _binary(b):
        return float(np.sqrt(max(float(np.mean(a != b)), 3 / n)))
    floor = float(np.std(a, ddof=1)) * np.sqrt(3 / n) if n > 1 else 0.0
    return max(float(np.std(b - a, ddof=1)) if n > 1 else 0.0, floor)


def mde(sd: float, n: int, alpha: float, n_tests: int) -> float:
    """Smallest true drop detectable with 80% power by a two-sided test at alpha / n_tests (Holm's first step)."""
    from scipy.stats import norm

    if n < 2 or sd <= 0:
        return float("inf")
    z = norm.ppf(1 - alpha / (2 * max(n_tests, 1))) + norm.ppf(POWER)
    return float(z * sd / np.sqrt(n))


def _p_value(a: np.ndarray, b: np.ndarray, mcnemar_p: float | None) -> tuple[str, float]:
    if mcnemar_p is not None:
        return "mcnemar", mcnemar_p
    diff = b - a
    if len(diff) == 0:
        return "none", 1.0
    if np.allclose(diff, diff[0]):  # constant: the exact sign-flip test (every flip is as extreme)
        return ("none", 1.0) if np.allclose(diff, 0) else ("sign-flip", float(min(1.0, 2.0 ** (1 - len(diff)))))
    from scipy.stats import ttest_rel

    return "paired-t", float(ttest_rel(b, a).pvalue)


FLIPS = 20_000  # Monte Carlo sign flips of the clustered pooled test beyond EXACT_FLIPS questions that differ
EXACT_FLIPS = 16


def task_weights(sizes: list[int], weight_by_size: bool = True) -> np.ndarray:
    """Each task's item weight relative to 1 / N (N items in all): 1 for the size-weighted mean (every item alike),
    N / (k n_t) for the plain mean of k task means (a suite's `aggregate.weight_by_size: false`), so the weighted
    items' sum over N is the difference of the suite score as its rule defines it."""
    n, k = sum(sizes), len(sizes)
    return np.ones(k) if weight_by_size else np.array([n / (k * m) for m in sizes])


def pooled_test(pairs: list[tuple[np.ndarray, np.ndarray]], keys: list[np.ndarray] | None = None,
                seed: int = 0, weight_by_size: bool = True) -> tuple[str, float, float, float, int]:
    """The stratified test over all items: (test, p, mean diff, its stderr, n), the mean weighted as the suite score
    is (task_weights). 0/1 scores: exact McNemar on the pooled discordant pairs (tasks weighted equally and of
    unequal sizes: the sign-flip test of the weighted differences, McNemar's with weights); else a normal test with
    the within-task variances. With `keys` (each item's question) naming a question in more than one item: the
    test by question (clustered_test)."""
    from scipy.stats import norm

    from harness.stats import mcnemar_exact

    n = sum(len(a) for a, _ in pairs)
    if n == 0:
        return "none", 1.0, 0.0, 0.0, 0
    w = task_weights([len(a) for a, _ in pairs], weight_by_size)
    equal = bool(np.allclose(w, 1.0))
    if keys is not None:
        flat = np.concatenate([np.asarray(k, dtype=object) for k in keys])
        if len(set(flat.tolist())) < flat.size:
            item_w = np.concatenate([np.full(len(a), c) for (a, _), c in zip(pairs, w, strict=True)])
            return clustered_test(np.concatenate([b - a for a, b in pairs]), flat, seed, None if equal else item_w)
    diff = sum(c * float(np.sum(b - a)) for (a, b), c in zip(pairs, w, strict=True)) / n
    var = sum(c * c * len(a) * float(np.var(b - a, ddof=1)) for (a, b), c in zip(pairs, w, strict=True)
              if len(a) > 1) / n ** 2
    if all(_binary(a) and _binary(b) for a, b in pairs):
        if not equal:
            d = np.concatenate([c * (b - a) for (a, b), c in zip(pairs, w, strict=True)])
            return "sign-flip (pooled, tasks weighted equally)", sign_flip_p(d[d != 0], seed), diff, \
                float(np.sqrt(var)), n
        a_only = sum(int(np.sum((a == 1) & (b == 0))) for a, b in pairs)
        b_only = sum(int(np.sum((a == 0) & (b == 1))) for a, b in pairs)
        return "mcnemar (pooled)", mcnemar_exact(a_only, b_only), diff, float(np.sqrt(var)), n
    if var <= 0:  # each task's differences constant (tasks of one item), not always one task's as another's
        d = np.concatenate([c * (b - a) for (a, b), c in zip(pairs, w, strict=True)])
        d = d[d != 0]
        if diff == 0 or d.size == 0:
            return "none", 1.0, diff, 0.0, n
        p = min(1.0, 2.0 ** (1 - d.size)) if np.allclose(d, d[0]) else sign_flip_p(d, seed)
        return "sign-flip", p, diff, 0.0, n
    return "stratified-z", float(2 * norm.sf(abs(diff) / np.sqrt(var))), diff, float(np.sqrt(var)), n


def clustered_test(diff: np.ndarray, keys: np.ndarray, seed: int = 0,
                   weights: np.ndarray | None = None) -> tuple[str, float, float, float, int]:
    """The pooled test when items share questions: under "no difference" each question's sum of differences is as
    likely to come out negated (the assumption McNemar's test makes of one item), so flipping the signs of the
    per-question sums gives the null distribution of their total; stderr sqrt(G / (G - 1) sum_g (D_g - W_g d)^2) / n
    (D_g: the question's sum of weighted differences, W_g: of its items' weights, task_weights; 1 each unless the
    suite weighs its tasks equally)."""
    wd = diff if weights is None else weights * diff
    _, inv = np.unique(keys.astype(str), return_inverse=True)
    sums = np.bincount(inv, weights=wd)
    sizes = np.bincount(inv, weights=weights).astype(float)
    n, g = diff.size, sums.size
    mean = float(wd.sum()) / n
    se = float(np.sqrt(g / (g - 1) * np.sum((sums - sizes * mean) ** 2)) / n) if g > 1 else 0.0
    return "sign-flip (pooled, by question)", sign_flip_p(sums[sums != 0], seed), mean, se, n


def sign_flip_p(sums: np.ndarray, seed: int = 0) -> float:
    """Two-sided p of |sum(sums)| among the totals with each sign flipped: exact for a few, else seeded Monte Carlo
    ((1 + hits) / (1 + FLIPS), never 0)."""
    m = sums.size
    if m == 0:
        return 1.0
    observed = abs(float(sums.sum())) - 1e-9 * max(1.0, float(np.abs(sums).sum()))
    if m <= EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1)
        return float(np.mean(np.abs(signs @ sums) >= observed))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, FLIPS, 1000):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(1000, FLIPS - start), m))
        hits += int(np.sum(np.abs(signs @ sums) >= observed))
    return (1 + hits) / (1 + FLIPS)


def compare(
    baseline: Mapping[str, Mapping[int, float]],
    candidate: Mapping[str, Mapping[int, float]],
    tolerance: float = 0.02,
    per_task_tolerance: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    suite_tolerance: float = 0.01,
    clusters: Mapping[str, Mapping[int, str]] | None = None,
    weight_by_size: bool = True,
) -> GateResult:
    """Gate `candidate` against `baseline`: both map task -> {doc_id: score}; `clusters` task -> {doc_id: the
    question it poses} (a doc_hash or a twin map's seed) for the pooled test, where tasks share questions;
    `weight_by_size` the suite's rule (False: its score is the plain mean of its task means, and so is the pooled
    difference)."""
    from harness.stats import paired_compare

    per_task_tolerance = per_task_tolerance or {}
    tasks = [t for t in sorted(baseline) if set(baseline[t]) & set(candidate.get(t, {}))]
    missing = [t for t in sorted(baseline) if t not in tasks]
    rows = []
    for task in tasks:
        ids = sorted(set(baseline[task]) & set(candidate[task]))
        a = np.array([baseline[task][i] for i in ids], dtype=float)
        b = np.array([candidate[task][i] for i in ids], dtype=float)
        cmp = paired_compare(a, b, alpha=alpha)
        test, p = _p_value(a, b, cmp.mcnemar_p)
        rows.append((task, a, b, cmp, test, p, [(clusters or {}).get(task, {}).get(i) or f"{task}#{i}" for i in ids]))
    keys = [np.array(r[6], dtype=object) for r in rows] if clusters else None
    pooled = pooled_test([(r[1], r[2]) for r in rows], keys, seed, weight_by_size) if len(rows) > 1 else None
    m = len(rows) + (pooled is not None)
    adjusted = holm([r[5] for r in rows] + ([pooled[1]] if pooled else []))
    verdicts = []
    for (task, a, b, cmp, test, p, _), p_adj in zip(rows, adjusted, strict=False):
        tol = float(per_task_tolerance.get(task, tolerance))
        task_mde = mde(diff_sd(a, b), len(a), alpha, m)
        failed = bool(cmp.mean_diff < -tol and p_adj < alpha)
        verdicts.append(TaskVerdict(
            task, cmp.n, cmp.mean_a, cmp.mean_b, cmp.mean_diff, cmp.ci_low, cmp.ci_high, test, p, p_adj, tol,
            task_mde, task_mde <= tol, failed,
        ))
    pooled_v = _pooled_verdict(rows, pooled, adjusted[-1], suite_tolerance, alpha, m, weight_by_size) \
        if pooled else None
    passed = not any(v.failed for v in verdicts) and not missing and not (pooled_v and pooled_v.failed)
    return GateResult(passed, alpha, verdicts, missing, pooled_v)


def _pooled_verdict(rows: list, pooled: tuple, p_adj: float, tol: float, alpha: float, m: int,
                    weight_by_size: bool = True) -> TaskVerdict:
    from scipy.stats import norm

    test, p, diff, se, n = pooled
    w = task_weights([len(r[1]) for r in rows], weight_by_size)
    base = sum(c * float(np.sum(r[1])) for r, c in zip(rows, w, strict=True)) / n
    half = float(norm.ppf(1 - alpha / 2)) * se
    sd = float(np.sqrt(sum(c * c * len(r[1]) * diff_sd(r[1], r[2]) ** 2 for r, c in zip(rows, w, strict=True)) / n))
    if "by question" in test:  # questions asked twice: the clustered spread, where it is the larger
        sd = max(sd, se * float(np.sqrt(n)))
    pooled_mde = mde(sd, n, alpha, m)
    return TaskVerdict(POOLED, n, base, base + diff, diff, diff - half, diff + half, test, p, p_adj, tol,
                       pooled_mde, pooled_mde <= tol, bool(diff < -tol and p_adj < alpha))


def markdown_report(result: GateResult, title: str, notes: Sequence[str] = (), partial: bool = False) -> str:
    """A pull-request comment: verdict first (`partial`: on what the baseline and the candidate have in common; with
    `notes`, one line each), then one row per task."""
    head = ("PASSED" if result.passed else "FAILED") + (" (partial comparison)" if partial else "")
    lines = [f"## {title}: {head}", "", *notes]
    if result.failed_tasks:
        lines.append(f"Significant drops beyond tolerance: {', '.join(result.failed_tasks)}.")
    if result.missing:
        lines.append(f"Tasks missing from the candidate's run: {', '.join(result.missing)}.")
    if result.underpowered_tasks:
        lines.append(
            f"Too few samples to detect a drop of the tolerance in: {', '.join(result.underpowered_tasks)} "
            "(a pass there is not evidence of no regression)."
        )
    if result.pooled is not None and result.pooled.failed:
        lines.append(f"Significant drop over the whole suite (pooled over its tasks): {result.pooled.diff:+.3f}.")
    columns = ["task", "n", "baseline", "candidate", "diff", f"{result.level} CI", "test", "p", "p (Holm)",
               "tolerance", "MDE", "verdict"]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for v in [*result.verdicts, *([result.pooled] if result.pooled else [])]:
        verdict = "FAIL" if v.failed else ("pass" if v.powered else "pass (underpowered)")
        lines.append(
            f"| {v.task} | {v.n} | {v.baseline:.3f} | {v.candidate:.3f} | {v.diff:+.3f} | "
            f"[{v.ci_low:+.3f}, {v.ci_high:+.3f}] | {v.test} | {v.p_value:.3g} | {v.p_holm:.3g} | "
            f"{v.tolerance:.3f} | {v.mde:.3f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
