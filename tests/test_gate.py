"""The regression gate's statistics on synthetic data, checked against scipy and by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.analysis.gate import compare, holm, markdown_report
from harness.stats import mcnemar_exact, paired_compare


def _scores(values: np.ndarray) -> dict[int, float]:
    return {i: float(v) for i, v in enumerate(values)}


@pytest.mark.parametrize("a_only, b_only", [(0, 0), (3, 9), (10, 10), (1, 20), (40, 25), (0, 7)])
def test_mcnemar_equals_scipy_exact_binomial(a_only: int, b_only: int) -> None:
    expected = 1.0 if a_only + b_only == 0 else binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def test_paired_bootstrap_coverage_is_near_nominal() -> None:
    """Over 300 simulated paired binary samples, the 95% interval covers the true difference ~95% of the time."""
    rng = np.random.default_rng(1)
    p_a, p_b, n, trials = 0.6, 0.55, 200, 300
    covered = 0
    for t in range(trials):
        latent = rng.random(n)
        a = (latent < p_a).astype(float)  # correlated pairs, as two models on the same items
        b = (np.where(rng.random(n) < 0.7, latent, rng.random(n)) < p_b).astype(float)
        c = paired_compare(a, b, iters=1000, seed=t)
        covered += c.ci_low <= (p_b - p_a) <= c.ci_high
    assert 0.91 <= covered / trials <= 0.98


def test_holm_matches_hand_computation() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_self_comparison_passes() -> None:
    rng = np.random.default_rng(0)
    base = {t: _scores(rng.random(300) < 0.7) for t in ("math", "lang")}
    result = compare(base, base)
    assert result.passed and all(v.diff == 0 and v.p_value == 1.0 for v in result.verdicts)


def test_a_real_drop_fails_and_names_the_task() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.8
    damaged = a & (rng.random(400) < 0.7)  # loses ~30% of its correct answers
    base = {"math": _scores(a), "lang": _scores(a)}
    cand = {"math": _scores(damaged), "lang": _scores(a)}
    result = compare(base, cand, tolerance=0.05)
    assert not result.passed and result.failed_tasks == ["math"]
    v = result.verdicts[1]
    assert v.task == "math" and v.test == "mcnemar" and v.p_holm < 1e-6 and v.ci_high < 0
    assert "FAIL" in markdown_report(result, "check") and "math" in markdown_report(result, "check")


def test_small_noise_within_tolerance_passes() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.8
    flip = rng.random(400) < 0.02
    result = compare({"math": _scores(a)}, {"math": _scores(a ^ flip)}, tolerance=0.05)
    assert result.passed


def test_small_samples_are_reported_as_underpowered() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(20) < 0.5
    result = compare({"t": _scores(a)}, {"t": _scores(a)}, tolerance=0.02)
    assert result.passed and result.underpowered_tasks == ["t"] and result.verdicts[0].mde > 0.2
    assert "underpowered" in markdown_report(result, "check")


def test_missing_task_fails() -> None:
    result = compare({"a": {0: 1.0}, "b": {0: 1.0}}, {"a": {0: 1.0}})
    assert not result.passed and result.missing == ["b"]


def test_continuous_scores_use_a_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(7, 1, 200)
    result = compare({"rating": _scores(a)}, {"rating": _scores(a - 1 + rng.normal(0, 0.3, 200))}, tolerance=0.5)
    assert result.verdicts[0].test == "paired-t" and result.failed_tasks == ["rating"]
