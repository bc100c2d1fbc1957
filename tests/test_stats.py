"""harness.stats on synthetic scores: intervals cover, McNemar matches scipy, pairing helps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stats import (
    Z95,
    aggregate,
    bounded_intervals,
    mcnemar_exact,
    mean_stderr,
    paired_compare,
    summarize,
    wilson_interval,
)


def test_summarize_matches_closed_form() -> None:
    x = np.r_[np.ones(30), np.zeros(70)]
    est = summarize(x, iters=4000, seed=1)
    assert est.mean == pytest.approx(0.3)
    assert est.n == 100
    assert est.stderr == pytest.approx(np.std(x, ddof=1) / 10)
    # Wilson's interval (0/1 scores) is close to mean +- 1.96 se for a proportion this size
    assert est.ci_low == pytest.approx(0.3 - 1.96 * est.stderr, abs=0.02)
    assert est.ci_high == pytest.approx(0.3 + 1.96 * est.stderr, abs=0.02)


def test_summarize_drops_nan_and_handles_empty() -> None:
    assert summarize([1.0, float("nan"), 0.0]).n == 2
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert math.isnan(mean_stderr([1.0]))


def test_interval_of_0_1_scores_covers_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        est = summarize(rng.random(80) < 0.6, iters=500, seed=i)
        hits += est.ci_low <= 0.6 <= est.ci_high
    assert 0.88 <= hits / 200 <= 0.99


def test_aggregate_is_macro_mean_with_wider_interval_than_any_single_task_mean_spread() -> None:
    tasks = {"a": np.ones(10), "b": np.r_[np.ones(5), np.zeros(95)]}
    est = aggregate(tasks, iters=2000)
    assert est.mean == pytest.approx((1.0 + 0.05) / 2)
    assert est.n == 110
    assert est.ci_low < est.mean < est.ci_high
    assert est.stderr == pytest.approx(math.sqrt(mean_stderr(tasks["b"]) ** 2) / 2)


def test_aggregate_of_a_task_without_a_stderr_has_none() -> None:
    """A task of one item has no stderr; the macro mean's, sqrt(sum se_t^2) / k, is then unknown too (lm-eval's
    group stderr is N/A). Skipping the task's term counted it in k with no variance: a smaller stderr."""
    est = aggregate({"a": np.array([1.0, 0.0, 1.0, 0.0]), "b": np.array([1.0])}, iters=200)
    assert est.mean == pytest.approx((0.5 + 1.0) / 2) and est.n == 5
    assert math.isnan(est.stderr)  # it was mean_stderr(a) / 2 = 0.144


def test_mcnemar_exact_matches_scipy_binomtest() -> None:
    from scipy.stats import binomtest

    for b, c in [(0, 0), (1, 0), (3, 9), (10, 10), (0, 12), (25, 40)]:
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_paired_compare_detects_a_real_gain_that_unpaired_intervals_miss() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.5).astype(float)
    b = a.copy()
    flip = np.flatnonzero(a == 0)[:20]  # b fixes 20 items a got wrong, breaks none
    b[flip] = 1
    cmp = paired_compare(a, b)
    assert cmp.mean_diff == pytest.approx(20 / 300)
    assert (cmp.a_only, cmp.b_only) == (0, 20)
    assert cmp.mcnemar_p < 1e-4
    assert cmp.ci_low > 0
    ea, eb = summarize(a), summarize(b)
    assert ea.ci_high > eb.ci_low  # unpaired intervals overlap


def test_paired_compare_non_binary_has_no_mcnemar_and_rejects_length_mismatch() -> None:
    cmp = paired_compare([0.1, 0.5, 0.9], [0.2, 0.5, 1.0])
    assert cmp.mcnemar_p is None and cmp.n == 3
    with pytest.raises(ValueError):
        paired_compare([1, 0], [1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=60))
def test_interval_brackets_the_mean(xs: list[float]) -> None:
    est = summarize(xs, iters=300)
    assert est.ci_low - 1e-12 <= est.mean <= est.ci_high + 1e-12
    assert 0.0 <= est.ci_low <= est.ci_high <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 1.0])), min_size=1, max_size=50))
def test_paired_is_antisymmetric(pairs: list[tuple[float, float]]) -> None:
    a, b = np.array(pairs).T
    ab, ba = paired_compare(a, b), paired_compare(b, a)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff)
    assert ab.mcnemar_p == pytest.approx(ba.mcnemar_p)


# ---------------------------------------------------------------------------------------------- intervals, small n
PS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]


def exact_coverage(n: int, p: float, bounded: bool) -> tuple[float, bool]:
    """P(interval covers p) over every outcome k of n 0/1 samples (binomial weights, no sampling noise), with
    lm-eval's stderr; and whether every interval stays inside [0, 1]."""
    from scipy.stats import binom

    k = np.arange(n + 1)
    v = k / n
    se = np.sqrt(v * (1 - v) / (n - 1))  # mean_stderr of k ones and n - k zeros
    if bounded:
        lo, hi = bounded_intervals(v, se, np.full(n + 1, n), np.ones(n + 1, bool), np.zeros(n + 1), np.ones(n + 1))
    else:  # the normal interval the suite score printed before
        lo, hi = v - Z95 * se, v + Z95 * se
    return float(binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()), bool(np.all((lo >= 0) & (hi <= 1)))


@pytest.mark.parametrize("bounded", [True, False])
def test_interval_coverage_at_small_n_near_0_and_1(bounded: bool) -> None:
    """n = 2..30 documents, p from 0.01 to 0.99: the interval the suite score prints covers p about 95% of the time
    and never leaves [0, 1]; the normal interval (value +- 1.96 lm-eval stderr) fails both, which this test shows."""
    runs = [exact_coverage(n, p, bounded) for n in range(2, 31) for p in PS]
    cover = np.array([c for c, _ in runs])
    ok = cover.mean() >= 0.94 and cover.min() >= 0.80 and all(inside for _, inside in runs)
    assert ok == bounded, (cover.mean(), cover.min())  # measured: 0.954 / 0.843 bounded; 0.588 / 0.02 normal


def test_pooled_suite_interval_covers_at_small_n() -> None:
    """A suite of three tasks of 2, 3 and 5 documents with p near 0 or 1, scored as lm-eval scores a group
    (size-weighted mean, its pooled_sample_stderr): the bounded interval covers the true mean about 95% of the time
    and stays in [0, 1]; the normal one does not."""
    from lm_eval.api.metrics import pooled_sample_stderr

    rng = np.random.default_rng(0)
    sizes = np.array([2, 3, 5])
    for ps in ([0.05, 0.02, 0.1], [0.95, 0.9, 0.98], [0.5, 0.8, 0.9]):
        truth = float(np.dot(sizes, ps) / sizes.sum())
        hits = normal_hits = 0
        for _ in range(2000):
            draws = [rng.random(n) < p for n, p in zip(sizes, ps, strict=True)]
            means = np.array([d.mean() for d in draws])
            ses = [float(d.std(ddof=1) / np.sqrt(d.size)) for d in draws]
            value, se = float(np.dot(sizes, means) / sizes.sum()), float(pooled_sample_stderr(ses, list(sizes)))
            (lo,), (hi,) = bounded_intervals([value], [se], [sizes.sum()], [True], [0.0], [1.0])
            assert 0.0 <= lo <= value <= hi <= 1.0
            hits += lo <= truth <= hi
            normal_hits += value - Z95 * se <= truth <= value + Z95 * se
        assert hits / 2000 >= 0.90 > normal_hits / 2000, (ps, hits, normal_hits)


def test_wilson_interval_closed_form() -> None:
    assert wilson_interval(0.0, 10) == pytest.approx((0.0, Z95**2 / (10 + Z95**2)))
    lo, hi = wilson_interval(0.5, 2)
    assert 0.0 < lo < 0.5 < hi < 1.0 and lo == pytest.approx(1 - hi)


def test_bounded_intervals_clip_other_metrics_to_their_range() -> None:
    lo, hi = bounded_intervals([9.5, 5.0, 3.0], [1.0, 1.0, 2.0], [4, 4, 4], [False] * 3, [1.0, 1.0, float("nan")],
                               [10.0, 10.0, float("nan")])
    assert list(hi) == pytest.approx([10.0, 5.0 + Z95, 3.0 + 2 * Z95])
    assert list(lo) == pytest.approx([9.5 - Z95, 5.0 - Z95, 3.0 - 2 * Z95])


def test_a_value_outside_its_metrics_range_keeps_its_interval_around_it() -> None:
    """FastChat keeps any rating a judge writes ([[85]] on the 1-10 scale): a mean of 80, stderr 2, was shown with
    the interval [10, 10], which does not hold the value it is the interval of."""
    (lo,), (hi,) = bounded_intervals([80.0], [2.0], [40], [False], [1.0], [10.0])
    assert (lo, hi) == pytest.approx((80.0 - 2 * Z95, 80.0 + 2 * Z95))


def test_z95_is_scipys_normal_quantile() -> None:
    """The one 95% quantile every interval and flag uses is scipy's norm.ppf(0.975)."""
    from scipy.stats import norm

    from harness.stats import Z95

    assert Z95 == pytest.approx(norm.ppf(0.975), abs=1e-15)
