"""The interval of a paired difference (harness.stats.paired_compare, the gate's per-task CI): it covers the true
mean difference at its level at small n, and it is scipy's paired t interval, the test the gate decides with."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import multinomial, ttest_rel

from harness.analysis.gate import compare
from harness.stats import paired_compare

REPLICATES = 2000
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / REPLICATES)  # 3 binomial sd of a coverage of 95% over REPLICATES: 0.0146


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


def _exact_binary_coverage(n: int, p10: float, p01: float) -> tuple[float, float]:
    """P(the interval covers p01 - p10) summed over every outcome of n pairs of 0/1 scores (k10 items right for a
    only, k01 right for b only, the rest alike), weighted by its multinomial probability: no sampling noise. Also
    P(no discordant pair), where the interval is [0, 0] and misses any true difference but 0."""
    covered = 0.0
    for k10 in range(n + 1):
        for k01 in range(n + 1 - k10):
            a = np.r_[np.ones(k10), np.zeros(n - k10)]
            b = np.r_[np.zeros(k10), np.ones(k01), np.zeros(n - k10 - k01)]
            c = paired_compare(a, b)
            if c.ci_low <= p01 - p10 <= c.ci_high:
                covered += multinomial.pmf([k10, k01, n - k10 - k01], n, [p10, p01, 1 - p10 - p01])
    return covered, (1 - p10 - p01) ** n


def test_the_interval_covers_95_percent_of_0_1_differences_at_n_10() -> None:
    """Two models scored 0/1 on 10 items, a right only on 15% of the items and b only on 30%: the percentile
    bootstrap covered the true +0.15 with probability 0.908 (exact, over every outcome)."""
    covered, _ = _exact_binary_coverage(10, 0.15, 0.30)
    assert covered == pytest.approx(0.95, abs=0.01)


def test_with_few_discordant_pairs_it_misses_only_where_none_is_seen() -> None:
    """a right only on 5% of the items, b on 10%, n = 10: 19.7% of the outcomes have no discordant pair, where the
    interval is [0, 0] (McNemar's p is 1: no evidence of a difference), so at most 80.3% can cover +0.05; the
    percentile bootstrap covered it 64.2% of the time, missing also where discordant pairs were seen."""
    covered, none_seen = _exact_binary_coverage(10, 0.05, 0.10)
    assert none_seen == pytest.approx(0.85 ** 10)
    assert 1 - none_seen - 0.01 <= covered <= 1 - none_seen + 1e-9


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40, 300])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_the_interval_is_scipy_s_paired_t_interval(n: int, alpha: float) -> None:
    rng = np.random.default_rng(n)
    for a, b in [(rng.random(n), rng.random(n)),  # continuous scores (F1, a judge's rating / 10)
                 ((rng.random(n) < 0.6).astype(float), (rng.random(n) < 0.4).astype(float))]:
        if np.all(b - a == (b - a)[0]):
            continue  # a constant difference: scipy's interval is NaN (below)
        want = ttest_rel(b, a).confidence_interval(confidence_level=1 - alpha)
        got = paired_compare(a, b, alpha=alpha)
        assert (got.ci_low, got.ci_high) == pytest.approx((want.low, want.high), rel=1e-9, abs=1e-12)


def test_degenerate_differences() -> None:
    """No difference on any item: [0, 0] (0/1 or not, any n); a constant difference: zero width at it (the sample
    shows no spread); one item that differs: no interval (NaN), as scipy gives; no item: NaN."""
    for a in ([1.0, 0.0, 1.0, 1.0], [0.3], [0.2, 0.7]):
        c = paired_compare(a, a)
        assert (c.ci_low, c.ci_high) == (0.0, 0.0)
    c = paired_compare([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert (c.ci_low, c.ci_high) == (1.0, 1.0)
    for a, b in (([0.0], [1.0]), ([], []), ([np.nan, 1.0], [0.0, np.nan])):
        c = paired_compare(a, b)
        assert math.isnan(c.ci_low) and math.isnan(c.ci_high)


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


def test_harness_check_reports_the_paired_t_interval(tiny_llama, results, tmp_path, monkeypatch, store) -> None:
    """End to end: a baseline of 10 documents, 3 of its scores flipped; `harness check --json` prints the task's
    interval of candidate - baseline, which is scipy's ttest_rel interval of the two score vectors (the bootstrap
    printed [-0.6, 0.0] where it is [-0.646, +0.046])."""
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
    for i in ids[:3]:
        samples[i] = 1.0 - samples[i]
    baseline = np.array([samples[i] for i in ids])
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json",
                             "--tolerance", "1")
    assert code == 0, err
    task = json.loads(out)["tasks"][0]
    want = ttest_rel(candidate, baseline).confidence_interval(confidence_level=0.95)
    assert task["diff"] == pytest.approx(float(np.mean(candidate - baseline)))
    assert (task["ci_low"], task["ci_high"]) == pytest.approx((want.low, want.high), rel=1e-9)
