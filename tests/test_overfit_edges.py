"""Edge cases of the overfitting verdicts on small hand-built analyses (a Data made of real frames and a real
lineage Graph), each checked against a hand computation: a stderr that is unknown (NaN) is no evidence, and
Benjamini-Hochberg is scipy's."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control

from harness.analysis.coverage import coverage
from harness.analysis.divergence import divergence_flags
from harness.analysis.evidence import GAP_COLUMNS, Data, suite_twins
from harness.analysis.flags import THRESHOLDS, bh_reject
from harness.analysis.lineage import Graph
from harness.analysis.overfit import evolve_flags, specialisation_flags, twin_gap_flags
from harness.analysis.verdicts import robust_reference, twin_tests

NAN = float("nan")


def _data(gaps: list[tuple[str, float, float, float]], edges: list[tuple[str, str]] = (),
          scores: list[tuple[str, str, float, float]] = (), selections: dict[str, set] | None = None) -> Data:
    """gaps: (model, public, twin, se of the gap) on suite s, independent twin s:heldout; edges (child, parent),
    every child a merge; scores (model, suite, value, se) on the public split."""
    ids = sorted({g[0] for g in gaps} | {m for e in edges for m in e} | {s[0] for s in scores})
    graph = Graph.from_edges(pd.DataFrame({"child_id": [c for c, _ in edges], "parent_id": [p for _, p in edges],
                                           "weight": [NAN] * len(edges)}))
    children = {c for c, _ in edges}
    models = pd.DataFrame({"model_id": ids, "name": ids, "method": [("linear" if m in children else None)
                                                                    for m in ids]})
    depth = graph.merge_depths(ids, children)
    models["merge_depth"] = [depth.get(m, 0) for m in ids]
    rows = pd.DataFrame([{"model_id": m, "suite": "s", "kind": "heldout", "twin": "s:heldout",
                          "relation": "independent", "public": p, "twin_value": t, "gap": p - t, "se": se,
                          "paired": False, "n": 300} for m, p, t, se in gaps], columns=GAP_COLUMNS)
    sc = pd.DataFrame([{"model_id": m, "suite": s, "split": "public", "value": v, "se": e}
                       for m, s, v, e in scores], columns=["model_id", "suite", "split", "value", "se"])
    twins = suite_twins({"s": {"heldout": "s:heldout"}})[0]
    exposure = graph.propagate(ids, selections or {})
    return Data(models, graph, sc, twins, {}, exposure, rows, {m: m for m in ids})


REFERENCE_GAPS = (0.00, 0.01, 0.02, 0.03, 0.04, 0.01, 0.02, 0.03)


@pytest.mark.parametrize("spread", [1.0, 8.0], ids=["narrow-pool", "wide-pool"])
def test_a_twin_gap_with_an_unknown_stderr_is_not_flagged_nor_counted_as_checked(spread: float) -> None:
    refs = [(f"r{i}", 0.6, 0.6 - spread * g, 0.02) for i, g in enumerate(REFERENCE_GAPS)]
    x_gap = 0.12 if spread == 1.0 else 0.40  # 10 (narrow) or 24 (wide) points beyond the references' median
    data = _data([*refs, ("x", 0.7, 0.7 - x_gap, NAN)],
                 scores=[(m, "s", p, 0.01) for m, p, _t, _se in [*refs, ("x", 0.7, 0, 0)]])
    tests = twin_tests(data, THRESHOLDS)
    x = next(t for t in tests if t.model_id == "x")
    assert x.ref.calibrated and x.excess == pytest.approx(x_gap - 0.02 * spread)
    assert not x.flagged and not x.p == 0.0  # no stderr: no evidence (it was z = inf, p = 0: flagged)
    assert twin_gap_flags(data, THRESHOLDS) == []
    (row,) = [c for c in coverage(data, THRESHOLDS) if c.model_id == "x"]
    assert row.status != "checked" and row.mde is None and "stderr is unknown" in row.detail
    assert {c.status for c in coverage(data, THRESHOLDS) if c.model_id != "x"} == {"checked"}


def test_benjamini_hochberg_with_an_unknown_p_value_rejects_only_what_scipy_rejects() -> None:
    for p in ([0.3, NAN, 0.001], [NAN, 0.3, 0.001, 0.002], [0.001, NAN, 0.3], [0.04, 0.5, NAN, 0.03, 0.2]):
        # an unknown p-value is no evidence: counted as 1 (one more test, never rejected)
        want = (false_discovery_control([1.0 if math.isnan(v) else v for v in p]) <= 0.05).tolist()
        assert bh_reject(p, 0.05) == want, p


def test_benjamini_hochberg_ties_and_bounds_agree_with_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.choice([0.0, 0.001, 0.004, 0.01, 0.02, 0.03, 0.5, 1.0], size=int(rng.integers(1, 9))).tolist()
        want = (false_discovery_control(p) <= 0.05).tolist()
        assert bh_reject(p, 0.05) == want, p


def test_a_divergence_with_an_unknown_stderr_is_not_flagged() -> None:
    # roots a, b (gap 2 points); ab = a+b, abc = ab+c: merge depth 2; abc's public gain is 10 points its twin lacks
    gaps = [(f"r{i}", 0.6, 0.6 - g, 0.02) for i, g in enumerate(REFERENCE_GAPS)]
    gaps += [("a", 0.5, 0.48, 0.02), ("b", 0.5, 0.48, 0.02), ("c", 0.5, 0.48, 0.02), ("abc", 0.6, 0.48, NAN)]
    data = _data(gaps, [("ab", "a"), ("ab", "b"), ("abc", "ab"), ("abc", "c")])
    assert int(data.models.set_index("model_id").loc["abc", "merge_depth"]) == 2
    assert not [f for f in divergence_flags(data, THRESHOLDS) if f.model_id == "abc"]


def test_a_specialisation_loss_with_an_unknown_stderr_is_not_significant() -> None:
    # x (merge of p, q) selected on code: +10 points there (se 0.01 each: z ~ 8); on judge -6 points, se unknown
    scores = [("p", "code", 0.5, 0.01), ("q", "code", 0.5, 0.01), ("x", "code", 0.6, 0.01),
              ("p", "judge", 0.5, NAN), ("q", "judge", 0.5, NAN), ("x", "judge", 0.44, NAN)]
    data = _data([], [("x", "p"), ("x", "q")], scores, {"x": {("code", None, "user", "x")}})
    assert specialisation_flags(data, THRESHOLDS) == []
    # the same loss with a known stderr (0.01 each: z ~ 4.9) is one
    known = [(m, s, v, 0.01 if math.isnan(e) else e) for m, s, v, e in scores]
    (f,) = specialisation_flags(_data([], [("x", "p"), ("x", "q")], known, {"x": {("code", None, "user", "x")}}),
                                THRESHOLDS)
    assert list(f.evidence["losses"]) == ["judge"]


def test_a_specialisation_gain_with_an_unknown_stderr_is_not_significant() -> None:
    scores = [("p", "code", 0.5, NAN), ("q", "code", 0.5, NAN), ("x", "code", 0.6, NAN),
              ("p", "judge", 0.5, 0.01), ("q", "judge", 0.5, 0.01), ("x", "judge", 0.40, 0.01)]
    data = _data([], [("x", "p"), ("x", "q")], scores, {"x": {("code", None, "user", "x")}})
    assert specialisation_flags(data, THRESHOLDS) == []


def test_a_reference_with_an_unknown_stderr_leaves_the_spread_of_the_pool_as_it_is() -> None:
    gaps = [8 * g for g in REFERENCE_GAPS] + [0.12]
    ses = [0.02] * 8 + [NAN]
    mad = float(np.median(np.abs(np.array(gaps) - np.median(gaps))))
    tau = math.sqrt((1.4826 * mad) ** 2 - 0.02 ** 2)  # by hand: the median sampling variance of the known ses
    centre, spread, se_c, k = robust_reference(gaps, ses)
    assert (centre, k) == (float(np.median(gaps)), 9)
    assert spread == pytest.approx(tau) and se_c == pytest.approx(1.2533 * 1.4826 * mad / 3)
    # and the verdicts of the pool: a model 17 points above a pool spread over 32 is no outlier
    refs = [(f"r{i}", 0.6, 0.6 - g, s) for i, (g, s) in enumerate(zip(gaps, ses, strict=True))]
    data = _data([*refs, ("y", 0.7, 0.7 - 0.33, 0.02)])
    y = next(t for t in twin_tests(data, THRESHOLDS) if t.model_id == "y")
    assert y.ref.spread == pytest.approx(tau) and not y.flagged


def _evolve(gen0_gaps: list[float], final_gap: float) -> Data:
    """An evolve run on zoo_math: generation 0's candidates with these search-minus-held-out gaps, the pick in
    generation 1 with `final_gap`."""
    rows = [{"evolve_id": "e", "generation": 0, "idx": i, "model_id": f"c{i}", "fitness": 0.5 + g, "heldout": 0.5}
            for i, g in enumerate(gen0_gaps)]
    rows.append({"evolve_id": "e", "generation": 1, "idx": 0, "model_id": "pick", "fitness": 0.5 + final_gap,
                 "heldout": 0.5})
    evolve = pd.DataFrame(rows).assign(best_model_id="pick", config='{"suite": "zoo_math"}')
    data = _data([], scores=[("pick", "zoo_math", 0.9, 0.01)])
    data.evolve = evolve
    return data


def _z_of(gen0_gaps: list[float], final_gap: float) -> float:
    """By hand: the excess over generation 0's median gap, in units of their sd * sqrt(1 + 1/k)."""
    k = len(gen0_gaps)
    return (final_gap - statistics.median(gen0_gaps)) / (statistics.stdev(gen0_gaps) * math.sqrt(1 + 1 / k))


def test_an_evolve_run_just_below_the_thresholds_is_not_flagged() -> None:
    gen0 = [0.0, 0.1, 0.2]
    se = statistics.stdev(gen0) * math.sqrt(1 + 1 / 3)
    below_z = 0.1 + 2.5758 * se  # z = 2.5758 < evolve_z = 2.576 (it was rounded to 2.58 before the comparison)
    assert _z_of(gen0, below_z) < THRESHOLDS.evolve_z
    assert evolve_flags(_evolve(gen0, below_z), THRESHOLDS, {}) == []
    tight = [0.0, 0.0001, 0.0002]  # z in the hundreds, the excess 4.996 points < gap_min (rounded to 5.00 before)
    assert evolve_flags(_evolve(tight, 0.0001 + 0.04996), THRESHOLDS, {}) == []
    assert len(evolve_flags(_evolve(tight, 0.0001 + 0.0501), THRESHOLDS, {})) == 1


def test_an_evolve_run_is_compared_with_the_median_of_generation_0() -> None:
    gen0 = [0.0, 0.02, 0.04, 0.10]  # median 0.03 (the mean of the middle two)
    (f,) = evolve_flags(_evolve(gen0, 0.40), THRESHOLDS, {})
    assert f.evidence["generation0_gap"] == pytest.approx(statistics.median(gen0))
    assert f.evidence["excess"] == pytest.approx(0.40 - statistics.median(gen0))
    assert f.evidence["z"] == round(_z_of(gen0, 0.40), 2)


def test_models_selected_on_the_twin_are_no_references_for_its_natural_gap() -> None:
    """Nine models selected on the twin split (their twin scores in-sample: 5 points above public) and eight clean
    ones with the twin's natural gap of 10 points: the pool is the eight. Counting the nine, its median was -5
    points and a clean model with the natural gap was flagged 15 points beyond it."""
    clean = [(f"r{i}", 0.6, 0.5 - 0.002 * i, 0.02) for i in range(8)]
    tuned = [(f"t{i}", 0.55, 0.6, 0.02) for i in range(9)]
    picked = {m: {("s", "heldout", "evolve", m)} for m, *_ in tuned}
    gaps = [*clean, *tuned, ("x", 0.62, 0.52, 0.02)]
    data = _data(gaps, scores=[(m, "s", p, 0.01) for m, p, _t, _se in gaps], selections=picked)
    tests = {t.model_id: t for t in twin_tests(data, THRESHOLDS)}
    assert tests["x"].ref.k == 8 and tests["x"].ref.centre == pytest.approx(0.107)  # the clean models, x left out
    assert not tests["x"].flagged and twin_gap_flags(data, THRESHOLDS) == []
    assert "not exposed on the suite or its twin" in tests["x"].ref.basis
    # nor are they checked themselves: silence on a twin they were selected on is no health
    cover = {c.model_id: c for c in coverage(data, THRESHOLDS)}
    assert cover["x"].status == "checked"
    assert all(cover[m].status == "not checkable" and "s:heldout is in-sample" in cover[m].detail for m in picked)


LINEAGE_REFS = [(f"r{i}", 0.6, 0.6 - g, 0.01) for i, g in enumerate((0.0, 0.01, 0.02, 0.01, 0.0, 0.02, 0.01, 0.015))]


def test_a_gap_inherited_from_a_grandparent_through_an_unscored_parent_is_not_new() -> None:
    """O (trained on s, gap 40 pts) and C1 make P, never scored on the twin; P and C2 make G (gap 10 pts). G's parents'
    mean gap is P's (looked through: the mean of O's and C1's, 20 pts) and C2's (0): 10 pts, so G inherits its gap.
    It had read C2 alone (0 pts) and called G's gap new in this model."""
    gaps = [*LINEAGE_REFS, ("O", 0.9, 0.5, 0.01), ("C1", 0.6, 0.6, 0.01), ("C2", 0.6, 0.6, 0.01),
            ("G", 0.7, 0.6, 0.01)]
    data = _data(gaps, [("P", "O"), ("P", "C1"), ("G", "P"), ("G", "C2")],
                 selections={"O": {("s", None, "train", "O")}})
    (g,) = [f for f in twin_gap_flags(data, THRESHOLDS) if f.model == "G"]
    want = statistics.mean([statistics.mean([0.4, 0.0]), 0.0])  # by hand: P stands for the mean of its parents
    want_se = math.sqrt((0.01 ** 2 + 0.01 ** 2) / 4 + 0.01 ** 2) / 2
    assert g.evidence["in_sample"] and g.evidence["parent_gap"] == pytest.approx(want)
    assert g.evidence["excess_over_parents_ci"][1] - g.evidence["excess_over_parents"] == pytest.approx(
        1.959964 * math.sqrt(0.01 ** 2 + want_se ** 2), abs=1e-4)
    assert g.evidence["origin"] == "inherited" and "inherits the gap" in g.explanation


def test_a_merge_with_a_parent_no_line_of_which_is_scored_has_no_known_origin() -> None:
    """M merges A (scored, gap 1 pt) and B (a source never scored on the twin); M's gap is 30 pts. Where it comes from
    is unknown (B may carry it); it had been called new against A's gap alone."""
    gaps = [*LINEAGE_REFS, ("A", 0.6, 0.59, 0.01), ("M", 0.9, 0.6, 0.01)]
    data = _data(gaps, [("M", "A"), ("M", "B")])
    (m,) = [f for f in twin_gap_flags(data, THRESHOLDS) if f.model == "M"]
    assert m.evidence["origin"] == "unknown" and "parent_gap" not in m.evidence
    assert "not scored on" in m.explanation and "new in this model" not in m.explanation
