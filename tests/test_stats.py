"""harness.stats on synthetic scores: intervals cover, McNemar matches scipy, pairing helps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stats import aggregate, mcnemar_exact, mean_stderr, paired_compare, summarize


def test_summarize_matches_closed_form() -> None:
    x = np.r_[np.ones(30), np.zeros(70)]
    est = summarize(x, iters=4000, seed=1)
    assert est.mean == pytest.approx(0.3)
    assert est.n == 100
    assert est.stderr == pytest.approx(np.std(x, ddof=1) / 10)
    # the percentile bootstrap interval is close to mean +- 1.96 se for a proportion this size
    assert est.ci_low == pytest.approx(0.3 - 1.96 * est.stderr, abs=0.02)
    assert est.ci_high == pytest.approx(0.3 + 1.96 * est.stderr, abs=0.02)


def test_summarize_drops_nan_and_handles_empty() -> None:
    assert summarize([1.0, float("nan"), 0.0]).n == 2
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert math.isnan(mean_stderr([1.0]))


def test_bootstrap_interval_covers_the_truth_about_95_percent() -> None:
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
    cmp = paired_compare(a, b, iters=3000)
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
    ab, ba = paired_compare(a, b, iters=200), paired_compare(b, a, iters=200)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff)
    assert ab.mcnemar_p == pytest.approx(ba.mcnemar_p)
