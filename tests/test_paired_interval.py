"""The interval of a paired difference (harness.stats.paired_compare, the gate's per-task CI): it covers the true
mean difference at its level at small n. Continuous scores get scipy's paired t interval; 0/1 scores get Tango's
score interval, which does not collapse to [0, 0] when the two models never disagree."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import binomtest, chi2, multinomial, norm, ttest_rel

from harness.analysis.gate import compare
from harness.stats import paired_compare

REPLICATES = 2000
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / REPLICATES)  # 3 binomial sd of a coverage of 95% over REPLICATES: 0.0146


def _binary_pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Score vectors of a and b with the given counts of items right for both, a alone, b alone, neither."""
    a = np.r_[np.ones(both), np.ones(a_only), np.zeros(b_only), np.zeros(neither)]
    b = np.r_[np.ones(both), np.zeros(a_only), np.ones(b_only), np.zeros(neither)]
    return a, b


def _score_statistic(a_only: int, b_only: int, n: int, d: float) -> float:
    """Tango's (1998) score statistic for H0: p_b - p_a = d, its nuisance parameter (P(a alone right)) found by
    maximising the multinomial likelihood numerically under H0, not by Tango's closed form."""
    lo, hi = max(0.0, -d), (1.0 - d) / 2  # p_a_only in [lo, hi] keeps p_b_only = p_a_only + d and the rest >= 0

    def nll(q: float) -> float:
        cells = np.array([q, q + d, 1 - 2 * q - d])
        counts = np.array([a_only, b_only, n - a_only - b_only])
        return -float(np.sum(counts[counts > 0] * np.log(np.clip(cells[counts > 0], 1e-300, None))))

    q = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x if hi > lo else lo
    var = n * (2 * q + d - d * d)  # n Var(b_only - a_only) under H0
    return (b_only - a_only - n * d) / math.sqrt(var)


def _tango_reference(a_only: int, b_only: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The score interval {d : |Z(d)| <= z}, each limit found by scipy's brentq."""
    z, est = norm.ppf(1 - alpha / 2), (b_only - a_only) / n
    eps = 1e-9
    mid = min(max(est, -1 + eps), 1 - eps)  # Z(est) = 0; at est = +-1 the variance is 0 there, so step inside
    lo = -1.0 if est == -1 else brentq(lambda d: _score_statistic(a_only, b_only, n, d) - z, -1 + eps, mid, xtol=1e-12)
    hi = 1.0 if est == 1 else brentq(lambda d: _score_statistic(a_only, b_only, n, d) + z, mid, 1 - eps, xtol=1e-12)
    return lo, hi


def test_the_interval_covers_95_percent_of_normal_differences_at_n_10() -> None:
    """2,000 seeded samples of 10 paired scores whose differences are N(0.1, 1): the percentile bootstrap (plug-in
    variance, normal-like quantiles) covered 0.1 in 90.7% of them; a 95% interval must cover 95% +- 1.5 points."""
    rng = np.random.default_rng(20240611)
    covered = 0
    for _ in range(REPLICATES):
        a = rng.normal(size=10)
        b = a + rng.normal(0.1, 1.0, size=10)
        c = paired_compare(a, b)
        covered += c.ci_low <= 0.1 <= c.ci_high
    assert abs(covered / REPLICATES - 0.95) <= TOLERANCE, covered / REPLICATES


def _exact_binary_coverage(n: int, p10: float, p01: float) -> float:
    """P(the interval covers p01 - p10) summed over every outcome of n pairs of 0/1 scores (k10 items right for a
    only, k01 right for b only, the rest alike), weighted by its multinomial probability: no sampling noise. (How
    the alike items split into both right and both wrong does not move the interval: tested below.)"""
    covered = 0.0
    for k10 in range(n + 1):
        for k01 in range(n + 1 - k10):
            c = paired_compare(*_binary_pairs(0, k10, k01, n - k10 - k01))
            if c.ci_low <= p01 - p10 <= c.ci_high:
                covered += multinomial.pmf([k10, k01, n - k10 - k01], n, [p10, p01, 1 - p10 - p01])
    return covered


def test_the_interval_covers_95_percent_of_0_1_differences_at_n_10() -> None:
    """Two models scored 0/1 on 10 items, a right only on 15% of the items and b only on 30%: the percentile
    bootstrap covered the true +0.15 with probability 0.908, the t interval 0.949 (exact, over every outcome)."""
    covered = _exact_binary_coverage(10, 0.15, 0.30)
    assert 0.95 <= covered <= 0.97


def test_where_discordant_pairs_are_rare_it_still_covers() -> None:
    """a right only on 5% of the items, b on 10%, n = 10: 19.7% of the outcomes have no discordant pair, where the t
    interval was [0, 0] and missed +0.05 (it covered 79.7%, the bootstrap 64.2%); b right alone on 5% of 20 items,
    a never: the t interval covered -0.05... +0.05 in 64.1%. A score interval does not collapse: >= 95% in both."""
    assert _exact_binary_coverage(10, 0.05, 0.10) >= 0.95
    assert _exact_binary_coverage(20, 0.0, 0.05) >= 0.95
    assert _exact_binary_coverage(20, 0.05, 0.0) >= 0.95


@pytest.mark.parametrize("n", [5, 10, 20, 50])
def test_exact_coverage_of_0_1_differences_over_a_grid(n: int) -> None:
    """Every outcome of n pairs, on a grid of P(a alone right), P(b alone right) in {0, 1, 5, 10, 20, 30%}
    (not both 0) and half the concordant pairs right for both: the 95% interval covers the true difference with
    probability >= 92.5% everywhere (the t interval fell to 4.9% at n = 5 and 39.5% at n = 50, where the models
    almost never disagree) and >= 95% on average (conservative at n = 5, as a score interval is)."""
    grid = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3]
    covs = []
    for p10 in grid:
        for p01 in grid:
            if p10 + p01 == 0:
                continue
            covs.append(_exact_binary_coverage(n, p10, p01))
    assert min(covs) >= 0.925, min(covs)
    assert float(np.mean(covs)) >= 0.95, np.mean(covs)


def test_the_split_of_concordant_pairs_does_not_change_the_interval() -> None:
    """The interval depends on the discordant counts and n only (as McNemar's test does): 12 items, a alone right on
    1, b alone on 4, the other 7 right for both, wrong for both, or split: one interval."""
    got = {(c.ci_low, c.ci_high) for c in (paired_compare(*_binary_pairs(k, 1, 4, 7 - k)) for k in range(8))}
    assert len(got) == 1


def test_0_1_scores_with_no_discordant_pair_get_an_interval_not_a_point() -> None:
    """20 items, both right on the same 15: the t interval said [0, 0]. Tango's interval with no discordant pair is
    +-z^2 / (n + z^2) (the score equation at b = c = 0: n d / (1 - d) = z^2), 0.1611 at n = 20; at n = 54 it is
    Newcombe's (1998, Table III, example (m): 54 pairs, all concordant) published +-0.0664."""
    z2 = norm.ppf(0.975) ** 2
    c = paired_compare(*_binary_pairs(15, 0, 0, 5))
    assert (c.ci_low, c.ci_high) == pytest.approx((-z2 / (20 + z2), z2 / (20 + z2)), abs=1e-9)
    assert c.ci_high == pytest.approx(0.1611, abs=1e-4)
    c = paired_compare(*_binary_pairs(54, 0, 0, 0))
    assert (round(c.ci_low, 4), round(c.ci_high, 4)) == (-0.0664, 0.0664)


@pytest.mark.parametrize("both, a_only, b_only, neither", [
    (36, 2, 12, 0), (18, 2, 12, 18), (36, 0, 14, 0), (2, 1, 97, 0), (0, 1, 29, 0), (0, 0, 30, 0),  # Newcombe's
    (59, 16, 6, 80), (1, 7, 1, 12),  # Fagerland et al.'s Cavo 2012 and Bentur 2009 tables
    (3, 4, 0, 3), (0, 5, 0, 0), (0, 0, 1, 0), (40, 3, 9, 148), (100, 20, 40, 0),
])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_the_0_1_interval_is_tango_s_score_interval(both: int, a_only: int, b_only: int, neither: int,
                                                     alpha: float) -> None:
    """Worked examples (Newcombe 1998's Table III tables, the two of Fagerland, Lydersen and Laake's chapter 8, and
    small or one-sided ones): the limits solve the score equation, the nuisance parameter maximised numerically."""
    n = both + a_only + b_only + neither
    c = paired_compare(*_binary_pairs(both, a_only, b_only, neither), alpha=alpha)
    assert (c.ci_low, c.ci_high) == pytest.approx(_tango_reference(a_only, b_only, n, alpha), abs=1e-6)
    assert c.ci_low <= c.mean_diff <= c.ci_high


@pytest.mark.parametrize("n", [10, 30, 100])
def test_it_excludes_0_exactly_when_mcnemar_s_score_test_rejects(n: int) -> None:
    """At d = 0 Tango's statistic is (b - c) / sqrt(b + c), McNemar's uncorrected chi-square test: the interval
    excludes 0 exactly when (b - c)^2 / (b + c) > chi2(1) at 1 - alpha. Every pair of discordant counts at n; and
    whenever the gate's exact McNemar test rejects, the interval excludes 0 too (the exact test is the more
    conservative: (4, 0) has exact p 0.125 and an interval above 0)."""
    crit = chi2.ppf(0.95, 1)
    for a_only in range(n + 1):
        for b_only in range(n + 1 - a_only):
            c = paired_compare(*_binary_pairs(0, a_only, b_only, n - a_only - b_only))
            excludes = c.ci_low > 0 or c.ci_high < 0
            d = a_only + b_only
            assert excludes == (d > 0 and (b_only - a_only) ** 2 / d > crit), (a_only, b_only)
            if d and binomtest(a_only, d, 0.5).pvalue < 0.05:
                assert excludes, (a_only, b_only)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40, 300])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_continuous_scores_get_scipy_s_paired_t_interval(n: int, alpha: float) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.random(n), rng.random(n)  # continuous scores (F1, a judge's rating / 10)
    want = ttest_rel(b, a).confidence_interval(confidence_level=1 - alpha)
    got = paired_compare(a, b, alpha=alpha)
    assert (got.ci_low, got.ci_high) == pytest.approx((want.low, want.high), rel=1e-9, abs=1e-12)


def test_degenerate_differences() -> None:
    """Continuous scores: no difference on any item [0, 0] (any n); a constant difference zero width at it (the
    sample shows no spread); one item that differs: no interval (NaN), as scipy gives; no item: NaN. 0/1 scores
    always get the score interval: one pair that differs, [-0.21, 1] (Tango's with n = 1: d = 1 is the estimate)."""
    for a in ([0.3], [0.2, 0.7], [0.5, 0.5, 0.25]):
        c = paired_compare(a, a)
        assert (c.ci_low, c.ci_high) == (0.0, 0.0)
    c = paired_compare([0.2, 0.3, 0.1], [0.7, 0.8, 0.6])
    assert (c.ci_low, c.ci_high) == pytest.approx((0.5, 0.5))
    for a, b in (([0.3], [0.9]), ([], []), ([np.nan, 1.0], [0.0, np.nan])):
        c = paired_compare(a, b)
        assert math.isnan(c.ci_low) and math.isnan(c.ci_high)
    c = paired_compare([0.0], [1.0])
    assert (c.ci_low, c.ci_high) == pytest.approx(_tango_reference(0, 1, 1), abs=1e-6)
    assert c.ci_high == 1.0 and -1 < c.ci_low < 0


def test_the_gate_s_interval_excludes_0_exactly_when_its_paired_t_test_rejects() -> None:
    """Continuous scores, 8 items a task, 300 seeded tasks: the CI the report prints beside the verdict says
    "differs from 0" exactly when the paired t-test's p is below alpha. The percentile bootstrap excluded 0 where
    the test did not in 50 of these 300 tasks."""
    rng = np.random.default_rng(7)
    base, cand = {}, {}
    for t in range(300):
        a = rng.random(8)
        base[f"t{t}"] = dict(enumerate(a.tolist()))
        cand[f"t{t}"] = dict(enumerate((a + rng.normal(0.1, 0.2, size=8)).tolist()))
    result = compare(base, cand, tolerance=0.0)
    assert {v.test for v in result.verdicts} == {"paired-t"}
    disagree = [v.task for v in result.verdicts if (v.ci_low > 0 or v.ci_high < 0) != (v.p_value < 0.05)]
    assert disagree == []


def test_harness_check_reports_the_score_interval(tiny_llama, results, tmp_path, monkeypatch, store) -> None:
    """End to end: a baseline of 10 documents scored 0/1, 3 of its scores flipped; `harness check --json` prints
    the task's interval of candidate - baseline, Tango's score interval of the discordant counts (the t interval
    printed [-0.646, +0.046] here)."""
    from tests.factories import run_cli
    from tests.test_check import write_tiny_suite

    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "my_suites"))
    write_tiny_suite(tmp_path / "my_suites", n=10)
    model = tiny_llama("m")
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    path = results / "baselines" / "rel1.json"
    doc = json.loads(path.read_text())
    samples = doc["tasks"]["tiny_mc"]["samples"]
    ids = sorted(samples, key=int)
    candidate = np.array([samples[i] for i in ids])  # the same model, evaluated alike, scores these again
    assert set(candidate.tolist()) <= {0.0, 1.0}
    for i in ids[:3]:
        samples[i] = 1.0 - samples[i]
    baseline = np.array([samples[i] for i in ids])
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json",
                             "--tolerance", "1")
    assert code == 0, err
    task = json.loads(out)["tasks"][0]
    a_only = int(np.sum((baseline == 1) & (candidate == 0)))
    b_only = int(np.sum((baseline == 0) & (candidate == 1)))
    assert task["diff"] == pytest.approx(float(np.mean(candidate - baseline)))
    assert (task["ci_low"], task["ci_high"]) == pytest.approx(_tango_reference(a_only, b_only, 10), abs=1e-6)
