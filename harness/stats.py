"""Statistics over per-sample scores: pure numpy/scipy, no store or engine imports.

    summarize(scores)                  -> Estimate(mean, stderr, ci_low, ci_high, n)
    t_half_width(differences)          -> half-width of the t interval of their mean (paired differences)
    aggregate({task: scores, ...})     -> Estimate of the macro mean over tasks (stratified bootstrap)
    paired_compare(a, b)               -> PairedComparison(mean_diff, interval, McNemar exact p for 0/1 scores)
    tango_interval(a_only, b_only, n)  -> Tango's score interval of a difference of paired proportions (0/1 scores)
    wilson_interval(p, n)              -> Wilson's score interval of a proportion (0/1 scores)
    bounded_intervals(value, se, n, binary, low, high) -> 95% intervals inside a metric's range
    weighted_means_stderr([(scores, keys, c), ...]) -> stderr of sum_t c_t mean_t, questions shared across tasks
    question_clustered_stderr([(scores, keys, c), ...]) -> the same, cluster-robust over questions (a suite score)

Bootstrap intervals are percentile intervals; every function that resamples takes a `seed` so results are
reproducible. A paired difference gets Tango's score interval for 0/1 scores and Student's t interval otherwise,
not a bootstrap (paired_compare). The interval of 0/1 scores is Wilson's (docs/eval.md "Intervals"): it stays
inside [0, 1] and does not collapse to a point when every sample is right or every one wrong, as the normal and the
bootstrap intervals do at small n.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ArrayLike = Sequence[float] | np.ndarray
DEFAULT_ITERS = 2000
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
_CHUNK = 1 << 22  # max resampled values held at once


@dataclass(frozen=True)
class Estimate:
    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class PairedComparison:
    mean_a: float
    mean_b: float
    mean_diff: float  # mean(b - a)
    stderr: float
    ci_low: float
    ci_high: float
    n: int
    mcnemar_p: float | None  # exact two-sided; None unless both score vectors are 0/1
    a_only: int | None  # items right for a and wrong for b (binary scores)
    b_only: int | None


def _clean(x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def mean_stderr(x: ArrayLike) -> float:
    """Standard error of the mean with the sample standard deviation (ddof=1), as lm-eval computes it."""
    arr = _clean(x)
    if arr.size < 2:
        return float("nan")
    return float(arr.std(ddof=1) / np.sqrt(arr.size))


def bootstrap_means(x: ArrayLike, iters: int = DEFAULT_ITERS, seed: int = 0) -> np.ndarray:
    """`iters` bootstrap replicates of the mean of x (resampling with replacement)."""
    arr = _clean(x)
    rng = np.random.default_rng(seed)
    if arr.size == 0:
        return np.full(iters, np.nan)
    per = max(1, _CHUNK // arr.size)
    out = np.empty(iters)
    for start in range(0, iters, per):
        k = min(per, iters - start)
        idx = rng.integers(0, arr.size, size=(k, arr.size))
        out[start:start + k] = arr[idx].mean(axis=1)
    return out


def bootstrap_stat(
    x: ArrayLike, stat: Callable[[np.ndarray], float], iters: int = DEFAULT_ITERS, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of any statistic (slower than bootstrap_means; for non-mean metrics)."""
    arr = _clean(x)
    rng = np.random.default_rng(seed)
    return np.array([stat(arr[rng.integers(0, arr.size, arr.size)]) for _ in range(iters)])


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    reps = replicates[~np.isnan(replicates)]
    if reps.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def summarize(x: ArrayLike, iters: int = DEFAULT_ITERS, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """Mean, stderr (lm-eval's) and a (1 - alpha) interval of per-sample scores (NaN = unscorable, dropped): Wilson's
    for 0/1 scores, else a bootstrap percentile interval."""
    from scipy.stats import norm

    arr = _clean(x)
    if arr.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    if _is_binary(arr):
        lo, hi = wilson_interval(float(arr.mean()), arr.size, float(norm.ppf(1 - alpha / 2)))
    else:
        lo, hi = percentile_ci(bootstrap_means(arr, iters, seed), alpha)
    return Estimate(float(arr.mean()), mean_stderr(arr), lo, hi, int(arr.size))


def t_half_width(x: ArrayLike, alpha: float = 0.05) -> float:
    """Half-width of the (1 - alpha) Student t interval of the mean of x (NaN dropped; n - 1 degrees of freedom),
    the interval scipy's ttest_rel gives for paired differences; NaN below 2 values. Wider than the normal one
    at small n (2.57 standard errors at n = 6, 2.05 at 30, 1.97 at 300, against 1.96)."""
    from scipy.stats import t

    n = _clean(x).size
    return float(t.ppf(1 - alpha / 2, n - 1)) * mean_stderr(x) if n >= 2 else float("nan")


def wilson_interval(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion p seen on n 0/1 samples: inside [0, 1] by construction, and not a
    point when p is 0 or 1 (at p = 0 it is [0, z^2 / (n + z^2)])."""
    lo, hi = _wilson(np.array([p], dtype=float), np.array([n], dtype=float), z)
    return float(lo[0]), float(hi[0])


def _wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        z2 = z * z / n
        centre = (p + z2 / 2) / (1 + z2)
        half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n)) / (1 + z2)
        lo, hi = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    return np.fmin(lo, p), np.fmax(hi, p)  # exactly 0 at p = 0 and 1 at p = 1 (not 1 - 1e-16)


def bounded_intervals(value: ArrayLike, se: ArrayLike, n: ArrayLike, binary: ArrayLike, low: ArrayLike,
                      high: ArrayLike, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """95% intervals of scores whose stderr is lm-eval's, kept inside each metric's range [low, high] (NaN: none).
    0/1 metrics: Wilson's interval on the effective sample size p(1 - p) / se^2 (at most n; n itself where p is 0
    or 1 or se is missing), so it is as wide as the stderr says where the normal interval fits and stays in [0, 1]
    where it does not. Other metrics: value +- z se, clipped to the range where the value is inside it (a judge's
    rating of 85 on the 1-10 scale, which FastChat keeps, would get the interval [10, 10] beside it)."""
    v, s, m = (np.asarray(a, dtype=float) for a in (value, se, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where((v > 0) & (v < 1) & (s > 0), np.minimum(m, v * (1 - v) / (s * s)), m)
    w_lo, w_hi = _wilson(v, np.maximum(eff, 1.0), z)
    lo, hi = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    keep = np.isnan(lo) | np.isnan(hi) | (v < lo) | (v > hi)  # no range, or a value outside it: not clipped
    n_lo = np.where(keep, v - z * s, np.clip(v - z * s, lo, hi))
    n_hi = np.where(keep, v + z * s, np.clip(v + z * s, lo, hi))
    b = np.asarray(binary, dtype=bool)
    return np.where(b, w_lo, n_lo), np.where(b, w_hi, n_hi)


def summarize_clustered(x: ArrayLike, clusters: ArrayLike, iters: int = DEFAULT_ITERS, alpha: float = 0.05,
                        seed: int = 0) -> Estimate:
    """Mean of per-sample scores whose samples come in clusters (an MT-bench question's two turns): a
    cluster-robust stderr, sqrt(G / (G - 1) * sum_g (sum_i (x_gi - mean))^2) / N, and a bootstrap interval that
    resamples whole clusters. With one sample per cluster it is `summarize`'s stderr. One cluster: NaN stderr and
    interval (resampling it always redraws the same cluster, an interval of width 0)."""
    arr = np.asarray(x, dtype=float).ravel()
    ids = np.asarray(clusters).ravel()
    keep = ~np.isnan(arr)
    arr, ids = arr[keep], ids[keep]
    if arr.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    _, inv = np.unique(ids, return_inverse=True)
    sums, counts = np.bincount(inv, weights=arr), np.bincount(inv).astype(float)
    g, mean = sums.size, float(arr.mean())
    if g < 2:
        return Estimate(mean, float("nan"), float("nan"), float("nan"), int(arr.size))
    resid = sums - counts * mean
    stderr = float(np.sqrt(g / (g - 1) * np.sum(resid**2)) / arr.size)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(iters, g))
    reps = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = percentile_ci(reps, alpha)
    return Estimate(mean, stderr, lo, hi, int(arr.size))


def weighted_means_stderr(tasks: Sequence[tuple[ArrayLike, Sequence[Hashable], float]]) -> float:
    """The standard error of sum_t c_t mean(x_t), where task t scored the items named by its keys: an item (a
    question) that two tasks pose, multiple choice and generation, counts once, with both scores, because they are
    correlated. Each item u contributes Z_u = sum_t c_t x_tu / n_t; the items posed by the same set of tasks are
    i.i.d. draws of one stratum g (m_g items), so var = sum_g m_g / (m_g - 1) sum_{u in g} (Z_u - mean_g Z)^2.
    A task sharing no item is c_t times lm-eval's mean stderr (sample sd / sqrt(n)); tasks sharing none are
    combined as independent. NaN when a stratum has one item or a task none."""
    units: dict[Hashable, float] = {}
    member: dict[Hashable, set[int]] = {}
    for t, (scores, keys, c) in enumerate(tasks):
        x = np.asarray(scores, dtype=float)
        if x.size == 0 or x.size != len(keys):
            return float("nan")
        for key, v in zip(keys, (x * (c / x.size)).tolist(), strict=True):
            units[key] = units.get(key, 0.0) + v
            member.setdefault(key, set()).add(t)
    strata: dict[tuple[int, ...], list[float]] = {}
    for key, z in units.items():
        strata.setdefault(tuple(sorted(member[key])), []).append(z)
    var = 0.0
    for zs in strata.values():
        if len(zs) < 2:
            return float("nan")
        arr = np.asarray(zs)
        var += arr.size / (arr.size - 1) * float(np.sum((arr - arr.mean()) ** 2))
    return var ** 0.5


def question_clustered_stderr(tasks: Sequence[tuple[ArrayLike, Sequence[Hashable], float]]) -> float:
    """The cluster-robust standard error of sum_t c_t mean(x_t), task t's items named by the question they pose
    (keys; one question may be posed by several items of several tasks: an MGSM problem in 11 languages):
        var = G / (G - 1) * sum_g (sum_{i in g} c_t(i) / n_t(i) * (x_i - mean_t(i)))^2
    over the G questions, each item centred on its own task's mean (the task means are what the score averages).
    With one item per question it is not a new number: for the size-weighted mean (c_t = n_t / N, N items in k
    tasks) var = (N - k) / (N - 1) * lm-eval's pooled_sample_stderr^2; for the plain mean of task means
    (c_t = 1 / k) var = sum_t N (n_t - 1) / ((N - 1) n_t) * se_t^2 / k^2 against lm-eval's sum_t se_t^2 / k^2
    (se_t = sd_t / sqrt(n_t)). Where every question is posed once by every task it equals weighted_means_stderr.
    NaN under two questions, or where a task has no items, a NaN score, or not one key per score."""
    resid: dict[Hashable, float] = {}
    for scores, keys, c in tasks:
        x = np.asarray(scores, dtype=float).ravel()
        if x.size == 0 or x.size != len(keys) or np.isnan(x).any():
            return float("nan")
        for key, r in zip(keys, ((x - x.mean()) * (c / x.size)).tolist(), strict=True):
            resid[key] = resid.get(key, 0.0) + r
    g = len(resid)
    if g < 2:
        return float("nan")
    r = np.fromiter(resid.values(), dtype=float, count=g)
    return float(np.sqrt(g / (g - 1) * np.sum(r * r)))


def aggregate(
    per_task: Mapping[str, ArrayLike], iters: int = DEFAULT_ITERS, alpha: float = 0.05, seed: int = 0
) -> Estimate:
    """The macro mean over tasks (each task weighs the same), with a stratified bootstrap interval.

    Each replicate resamples every task's samples within that task; stderr combines the task stderrs.
    """
    tasks = [_clean(v) for _, v in sorted(per_task.items())]
    tasks = [t for t in tasks if t.size]
    if not tasks:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    reps = np.mean([bootstrap_means(t, iters, seed + i) for i, t in enumerate(tasks)], axis=0)
    ses = np.array([mean_stderr(t) for t in tasks])  # a task of one item has none (NaN): nor has the mean then,
    stderr = float(np.sqrt(np.sum(ses**2)) / len(tasks))  # as lm-eval's group stderr is N/A (skipping it shrank it)
    lo, hi = percentile_ci(reps, alpha)
    mean = float(np.mean([t.mean() for t in tasks]))
    return Estimate(mean, stderr, lo, hi, int(sum(t.size for t in tasks)))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (a binomial test at p = 1/2)."""
    from scipy.stats import binom

    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(a_only, b_only), n, 0.5)))


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def paired_compare(a: ArrayLike, b: ArrayLike, alpha: float = 0.05) -> PairedComparison:
    """Compare two models scored on the same samples, in the same order: b - a.

    Pairs where either score is NaN are dropped. 0/1 scores get Tango's score interval of the difference of paired
    proportions (tango_interval): it depends on the discordant counts and n only, as McNemar's test does, excludes
    0 exactly when McNemar's uncorrected chi-square test rejects at alpha (its statistic at d = 0), and does not
    collapse when no item is scored differently (20 items, no discordant pair: [-0.161, +0.161], where the t
    interval said [0, 0]). Its exact coverage (every outcome, n = 5, 10, 20, 50, a grid of cell probabilities) is
    92.8% at worst at n = 5 and 93.7% at worst from n = 10, against the t interval's 4.9-39.5% where the two
    models rarely disagree (it missed every true difference when no discordant pair was seen); Newcombe's hybrid
    score interval (method 10) fell to 88.6%. The gate's exact McNemar test is the more conservative: where it
    rejects the interval excludes 0, but (4, 0) discordant pairs (exact p 0.125) give an interval above 0.
    Other scores get Student's t interval of the mean of the paired differences (n - 1 degrees of freedom, the
    sample sd): scipy's `ttest_rel(b, a).confidence_interval()`, so it excludes 0 exactly when the gate's paired
    t-test rejects. Its coverage (seeded simulations, 2,000 samples each, n = 5, 10, 20, 50, 200): 94.9-95.8% for
    normal differences, 88.9% at n = 5 to 94.8% at 200 for skewed ones (exponential), 81% to 93% for very skewed
    (lognormal). Degenerate continuous samples: no difference on any item, [0, 0]; a constant difference d,
    [d, d] (the sample shows no spread); otherwise NaN below 2 pairs. docs/check.md has the figures.
    """
    xa, xb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if xa.shape != xb.shape:
        raise ValueError(f"paired scores must have the same length, got {xa.size} and {xb.size}")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    diff = xb - xa
    p = a_only = b_only = None
    if xa.size and _is_binary(xa) and _is_binary(xb):
        a_only, b_only = int(np.sum((xa == 1) & (xb == 0))), int(np.sum((xa == 0) & (xb == 1)))
        p = mcnemar_exact(a_only, b_only)
        lo, hi = tango_interval(a_only, b_only, int(xa.size), alpha)
    else:
        lo, hi = paired_t_interval(diff, alpha)
    nan = float("nan")
    return PairedComparison(
        mean_a=float(xa.mean()) if xa.size else nan, mean_b=float(xb.mean()) if xb.size else nan,
        mean_diff=float(diff.mean()) if diff.size else nan, stderr=mean_stderr(diff), ci_low=lo, ci_high=hi,
        n=int(diff.size), mcnemar_p=p, a_only=a_only, b_only=b_only,
    )


def tango_interval(a_only: int, b_only: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Tango's (1998) score interval of p_b - p_a from n pairs of 0/1 scores, `a_only` of them right for a alone
    and `b_only` for b alone: the d where |Z(d)| <= z, Z(d) = (b_only - a_only - n d) / sqrt(n (2 q + d (1 - d))),
    q the maximum-likelihood P(a alone right) under p_b - p_a = d (Tango's closed form). Z falls as d grows, so
    each limit is found by bisection. No discordant pair: +-z^2 / (n + z^2)."""
    from scipy.stats import norm

    z, est = float(norm.ppf(1 - alpha / 2)), (b_only - a_only) / n
    lo = -1.0 if est == -1 else _bisect(lambda d: _tango_z(a_only, b_only, n, d) > z, -1.0, est)
    hi = 1.0 if est == 1 else _bisect(lambda d: _tango_z(a_only, b_only, n, d) >= -z, est, 1.0)
    return lo, hi


def _tango_z(a_only: int, b_only: int, n: int, d: float) -> float:
    """Tango's score statistic for H0: p_b - p_a = d (inf where its variance is 0 and b_only - a_only > n d)."""
    big_b = -a_only - b_only + (2 * n - b_only + a_only) * d  # q is the root >= 0 of 2n q^2 + B q + C = 0
    c = -a_only * d * (1 - d)
    q = (np.sqrt(max(big_b * big_b - 8 * n * c, 0.0)) - big_b) / (4 * n)
    var, num = n * (2 * q + d * (1 - d)), b_only - a_only - n * d
    if var > 0:
        return float(num / np.sqrt(var))
    return float(np.sign(num) * np.inf) if num else 0.0


def _bisect(left_of_root: Callable[[float], bool], lo: float, hi: float, iters: int = 64) -> float:
    """The point in [lo, hi] where `left_of_root` turns from True to False (64 halvings: below 1e-18 of width)."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if left_of_root(mid) else (lo, mid)
    return (lo + hi) / 2


def paired_t_interval(diff: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """The (1 - alpha) t interval of mean(diff): [d, d] where every difference is d (0 at any n, else n >= 2);
    NaN with no pair, or one pair that differs."""
    if diff.size and np.all(diff == diff[0]) and (diff.size >= 2 or diff[0] == 0):
        return float(diff[0]), float(diff[0])
    if diff.size < 2:
        return float("nan"), float("nan")
    mean, half = float(diff.mean()), t_half_width(diff, alpha)
    return mean - half, mean + half
