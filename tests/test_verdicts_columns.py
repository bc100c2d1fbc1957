"""The column-wise twin-gap tests, lineage divergence and coverage (harness.analysis.verdicts, divergence, coverage)
against plain per-row references (the formulas as docs/overfitting.md states them, one row at a time), on real DuckDB
stores with planted overfit models: every field equal, bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gen_store import TWINS, build, mapped_twins
from harness.analysis.coverage import coverage, tier_for
from harness.analysis.divergence import _divergence_tests
from harness.analysis.evidence import MIN_PAIRED_DOCS, Data, gather
from harness.analysis.flags import THRESHOLDS, bh_reject
from harness.analysis.gap_rows import gap_rows
from harness.analysis.overfit import analyse_data
from harness.analysis.verdicts import LOO_MAX, Z80, _z, robust_reference, twin_tests
from harness.store import Store

T = THRESHOLDS


@pytest.fixture(scope="module", params=[(40, 2, True), (120, 3, False)], ids=["loo-mapped", "large-pools"])
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Data:
    """40 models (pools of at most LOO_MAX: leave-one-out; aligned twins) and 120 (larger pools, independent)."""
    models, seed, mapped = request.param
    path = tmp_path_factory.mktemp("columns") / "s.duckdb"
    build(path, models=models, docs=120, sources=4, seed=seed)
    return gather(Store(path), twins=mapped_twins(path, 120) if mapped else TWINS)


def reference_line(vals: list[tuple], x: float) -> tuple[float, float, float, int, float]:
    """(centre at ability x, tau, se of the centre at x, k, slope) of pool values (gap, se, ability), as
    docs/overfitting.md states it, with scipy's Theil-Sen slope (less the tilt of the public score's sampling error)
    and the median of gap - slope x, kept when the slope is beyond 2 of its stderrs (residual scale / sqrt(Sxx)),
    else the median; fitted again without the references more than 2.5 (tau^2 + median sampling variance)^0.5
    above the line."""
    from scipy.stats import theilslopes

    def fit(g: np.ndarray, s: np.ndarray, a: np.ndarray) -> tuple:
        k = len(g)
        var = float(np.median(s ** 2))
        sxx = float(((a - a.mean()) ** 2).sum())
        slope, intercept = 0.0, float(np.median(g))
        if k > 2 and sxx / k > var:  # abilities spread beyond the public's sampling variance (var / 2) twice
            b = float(theilslopes(g, a)[0])
            slope = (b * sxx / k - var / 2) / (sxx / k - var / 2)  # less the tilt of the public's own noise
            intercept = float(np.median(g - slope * a))
        sd = 1.4826 * float(np.median(np.abs(g - intercept - slope * a))) * (math.sqrt(k / (k - 2)) if slope else 1)
        if slope and abs(slope) < 2.0 * max(sd, math.sqrt(var)) / math.sqrt(sxx):  # no trend beyond noise
            slope, intercept = 0.0, float(np.median(g))
            sd = 1.4826 * float(np.median(np.abs(g - intercept)))
        return k, var, sxx, slope, intercept, sd, math.sqrt(max(0.0, sd ** 2 - var)), a.mean()

    g, s, a = (np.array([v[i] for v in vals], dtype=float) for i in range(3))
    k, var, sxx, slope, intercept, sd, tau, mean = fit(g, s, a)
    keep = g - intercept - slope * a <= 2.5 * math.sqrt(tau ** 2 + var)
    if k >= 3 and tau ** 2 + var > 0 and not keep.all() and keep.sum() >= 3:
        k, var, sxx, slope, intercept, sd, tau, mean = fit(g[keep], s[keep], a[keep])
    lever = math.sqrt(1 / k + (x - mean) ** 2 / sxx) * math.sqrt(k) if slope else 1.0
    se_c = 1.2533 * max(sd, math.sqrt(var)) / math.sqrt(k) * lever
    return intercept + slope * x, tau, se_c, k, slope


def out_of_reach(vals: list[tuple], public: float, twin: float) -> bool:
    """A median (no line) calibrates no model whose public and twin scores both lie beyond its references' public
    and twin scores (public - gap), widened by half their range and at least two stderrs of a score (the gap's
    median sampling variance, halved)."""
    g, s, a = (np.array([v[i] for v in vals], dtype=float) for i in range(3))
    scores = np.concatenate([a, a - g])
    scores = scores[~np.isnan(scores)]
    s = s[~np.isnan(s)]
    if not scores.size or public != public or twin != twin:
        return False
    widen = max((scores.max() - scores.min()) / 2, 2 * math.sqrt(float(np.median(s ** 2)) / 2 if s.size else 0.0))
    return min(public, twin) > scores.max() + widen or max(public, twin) < scores.min() - widen


def reference_tests(data: Data) -> list[list]:
    """Per gap row: (model, suite, kind, reference, excess, se, p, flagged, mde, items needed), one at a time."""
    rows = gap_rows(data)
    pools: dict = {}
    for (mid, suite, kind), r in rows.items():
        if not data.in_sample(mid, suite):
            pools.setdefault((suite, kind), {})[mid] = (r["gap"], r["se"], r["public"])
    out = []
    for (mid, suite, kind), r in rows.items():
        pool = pools.get((suite, kind), {})
        skip = {mid, *data.graph.parents.get(mid, ())} if len(pool) <= LOO_MAX else set()
        vals = [v for m, v in pool.items() if m not in skip]
        x = r["public"]
        centre, tau, se_c, k, slope = reference_line(vals, x) if vals else (0.0, 0.0, 0.0, 0, 0.0)
        calibrated = k >= T.min_reference or r["relation"] == "aligned"
        if k >= T.min_reference and not slope and r["relation"] != "aligned" \
                and out_of_reach(vals, x, r["twin_value"]):
            calibrated = False
        tried = [(centre, tau, se_c)]
        if k < T.min_reference and r["relation"] == "aligned":  # zero by design, and their line when k >= 2
            tried = [(0.0, 0.0, 0.0)] + ([(centre, tau, se_c)] if k >= 2 else [])
        tests = []
        for centre, tau, se_c in tried:
            excess = r["gap"] - centre
            se = math.sqrt(r["se"] ** 2 + tau ** 2 + se_c ** 2)
            z = excess / se if se > 0 else (math.inf if excess > 0 else 0.0)
            tests.append(((centre, tau, se_c, k, calibrated), excess, se, 0.5 * math.erfc(z / math.sqrt(2))))
        pick = max(tests, key=lambda x: x[3])  # the stricter test: the larger p (the first of equal ones)
        out.append([mid, suite, kind, *pick, min(x[1] for x in tests), r])
    live = [i for i, x in enumerate(out) if x[3][4]]
    rejected = {i for i, rej in zip(live, bh_reject([out[i][6] for i in live], T.fdr), strict=True) if rej}
    z_crit = _z(T.fdr * max(1, len(rejected)) / max(1, len(live)))
    for i, x in enumerate(out):
        r, least = x.pop(), x.pop()
        (_c, tau, se_c, _k, _cal), se = x[3], x[5]
        room = (T.gap_min / (z_crit + Z80)) ** 2 - tau ** 2 - se_c ** 2
        n = max(int(r.get("n") or 0), 1)
        x += [i in rejected and least >= T.gap_min, max(T.gap_min, (z_crit + Z80) * se),
              None if room <= 0 else max(n, math.ceil(r["se"] ** 2 * n / room))]
    return out


def _close(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative (the columns read the line at the pool's mean ability, then move along it)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _compared(data: Data) -> list[list]:
    """The per-row reference's tests, after checking that the column-wise ones equal them."""
    got = [(x.model_id, x.suite, x.kind, (x.ref.centre, x.ref.spread, x.ref.se, x.ref.k, x.ref.calibrated),
            x.excess, x.se, x.p, x.flagged, x.mde, x.items_needed) for x in twin_tests(data, T)]
    want = reference_tests(data)
    bad = [(g, w) for g, w in zip(got, want, strict=True) if not _close(list(g), w)]
    assert len(got) == len(want) and not bad, bad[:3]
    return want


def test_twin_tests_equal_the_per_row_reference(data: Data) -> None:
    want = _compared(data)
    assert any(x[7] for x in want) and any(x[3][4] for x in want)  # planted models flagged, calibrated pools
    assert any(x[3][4] and x[3][0] != 0 for x in want)  # a pool's line read at the model's ability


def test_twin_tests_equal_the_per_row_reference_beyond_a_median_s_reach(tmp_path: Path) -> None:
    """Twelve guessers, a capable model beyond their scores (not calibrated), a model just above them (within the
    widened range: calibrated) and e, 20 points lower on the twin only (its public score in range: calibrated)."""
    from tests.test_overfit_stores import GUESSERS, _heldout_tests

    scores = {**GUESSERS, "c": (0.80, 0.68), "d": (0.27, 0.26), "e": (0.25, 0.05)}
    data, _ = _heldout_tests(tmp_path / "g.duckdb", scores)
    want = {data.names[x[0]]: x for x in _compared(data)}
    assert [n for n, x in want.items() if not x[3][4]] == ["c"] and want["c"][3][3] == 13  # e left out: far above


def reference_divergence(data: Data) -> list[tuple]:
    """Every lineage-divergence test row by row, then Benjamini-Hochberg and the smallest p per (model, suite)."""
    rows = gap_rows(data)
    depth = dict(zip(data.models["model_id"], data.models["merge_depth"], strict=True))
    roots = data.graph.roots_of(list(data.models["model_id"]))
    pools: dict = {}
    for (mid, suite, kind), r in rows.items():
        if not data.in_sample(mid, suite):
            pools.setdefault((suite, kind), []).append((r["gap"], r["se"]))
    spread = {key: robust_reference([v[0] for v in p], [v[1] for v in p])[1] for key, p in pools.items()}
    tests, sums = [], {}
    for (mid, suite, kind), r in rows.items():
        if depth.get(mid, 0) < T.min_depth:
            continue
        group = (roots.get(mid, frozenset()), suite, kind)
        if group not in sums:  # summed in the roots' sorted order, whatever the hash seed
            scored = [rows[(q, suite, kind)] for q in sorted(group[0]) if (q, suite, kind) in rows]
            pub, twin, gap, var = 0.0, 0.0, 0.0, 0.0
            for q in scored:
                pub, twin, gap, var = pub + q["public"], twin + q["twin_value"], gap + q["gap"], var + q["se"] ** 2
            sums[group] = (len(scored), pub, twin, gap, var)
        k, pub, twin, gap, var = sums[group]
        if not k:
            continue
        pub_gain, twin_gain, div = r["public"] - pub / k, r["twin_value"] - twin / k, r["gap"] - gap / k
        if pub_gain <= 0:
            continue
        se = math.sqrt(r["se"] ** 2 + var / k ** 2 + spread.get((suite, kind), 0.0) ** 2 * (1 + 1 / k))
        z = div / se if se > 0 else (math.inf if div > 0 else 0.0)
        tests.append((mid, suite, kind, r, k, pub_gain, twin_gain, div, se, 0.5 * math.erfc(z / math.sqrt(2))))
    best: dict = {}
    for x, rej in zip(tests, bh_reject([x[9] for x in tests], T.fdr), strict=True):
        if rej and x[7] >= T.divergence_min and ((x[0], x[1]) not in best or x[9] < best[(x[0], x[1])][9]):
            best[(x[0], x[1])] = x
    return list(best.values())


def test_divergence_tests_equal_the_per_row_reference(data: Data) -> None:
    depth = dict(zip(data.models["model_id"].tolist(), data.models["merge_depth"].tolist(), strict=True))
    got = _divergence_tests(data, gap_rows(data), depth, T)
    want = reference_divergence(data)
    assert got == want
    assert want or len(depth) < LOO_MAX  # the 120-model store's deep chains: 5 divergent (model, suite)


def test_coverage_equals_the_per_row_reference(data: Data) -> None:
    flags = analyse_data(data)
    marked = {(f.model_id, f.suite) for f in flags if f.signal in ("twin_gap", "lineage_divergence")}
    tests = twin_tests(data, T)
    got = coverage(data, T, flags)
    public = data.scores[data.scores["split"] == data.scores["suite"].map(data.default_split)]
    pairs = sorted(set(zip(public["model_id"], public["suite"], strict=True)),
                   key=lambda ms: (data.names.get(ms[0], ms[0]), ms[1]))
    assert [(c.model_id, c.suite) for c in got] == pairs
    statuses = set()
    for c in got:
        mine = [x for x in tests if (x.model_id, x.suite) == (c.model_id, c.suite)]
        live = [x for x in mine if x.ref.calibrated]
        if not data.twins.get(c.suite):
            assert (c.status, c.flagged, c.mde) == ("no twin", False, None)
        elif not mine:
            assert c.status == "not checkable" and not c.flagged and c.mde is None
            assert (f"{MIN_PAIRED_DOCS} mapped items" in c.detail) != c.detail.startswith("no twin run: harness eval")
        elif not live:
            assert (c.status, c.flagged, c.detail) == ("not calibrated", False, mine[0].ref.basis)
        else:
            best = min(live, key=lambda x: x.mde)
            tier = f"needs tier {tier_for(c.suite, best.items_needed)}" if best.items_needed is not None else \
                f"varies by {100 * best.ref.spread:.1f} pts" if best.ref.spread >= best.ref.se else \
                f"at its ability has a stderr of {100 * best.ref.se:.1f} pts"
            assert (c.status, c.mde) == ("checked", best.mde) and tier in c.detail
            assert c.detail.startswith(f"smallest detectable excess {100 * best.mde:.1f} pts on twin {best.kind} "
                                       f"(n={int(best.row['n'])}, {'paired' if best.row['paired'] else 'unpaired'})")
            assert c.flagged == (any(x.flagged for x in mine) or (c.model_id, c.suite) in marked)
        statuses.add(c.status)
    assert {"checked", "no twin"} <= statuses and any(c.flagged for c in got)


def test_twin_tests_keep_their_pools_and_results_on_the_data(tmp_path: Path) -> None:
    """A second call (the coverage after the flags) reuses the tests: the same objects, computed once."""
    path = tmp_path / "s.duckdb"
    build(path, models=12, docs=40, sources=3, seed=5)
    data = gather(Store(path), twins=TWINS)
    first = twin_tests(data, T)
    assert twin_tests(data, T) is first and "pools" in data.verdicts_cache


DIVERGENCE_DUMP = """
import sys
from dataclasses import replace

from benchmarks.gen_store import TWINS
from harness.analysis.divergence import _divergence_tests
from harness.analysis.evidence import gather
from harness.analysis.flags import THRESHOLDS
from harness.analysis.gap_rows import gap_rows
from harness.store import Store

data = gather(Store(sys.argv[1]), twins=TWINS)
depth = dict(zip(data.models["model_id"].tolist(), data.models["merge_depth"].tolist(), strict=True))
T = replace(THRESHOLDS, fdr=1.0, divergence_min=-1e9)  # every test, not only the rejections
for x in sorted(_divergence_tests(data, gap_rows(data), depth, T), key=lambda x: (x[0], x[1])):
    print(x[0], x[1], repr(x[8]), repr(x[9]))
"""


def test_divergence_p_values_do_not_follow_the_hash_seed(tmp_path: Path) -> None:
    """The roots' sums are taken in one order: the same store gives the same bits under any PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    path = tmp_path / "s.duckdb"
    build(path, models=120, docs=120, sources=4, seed=3)
    root = Path(__file__).resolve().parent.parent
    outs = [subprocess.run([sys.executable, "-c", DIVERGENCE_DUMP, str(path)], capture_output=True, text=True,
                           check=True, cwd=root, env={**os.environ, "PYTHONHASHSEED": seed,
                                                      "PYTHONPATH": str(root)}).stdout
            for seed in ("1", "2", "3")]
    assert outs[0].count("\n") > 20
    assert outs[0] == outs[1] == outs[2]
