"""Twin-gap verdicts: calibrated on the spread of real models, robust to contaminated references, "not
calibrated" with too few, power in every verdict, and coverage of every (model, suite)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gen_store import TWINS, build, mapped_twins
from harness.analysis.coverage import coverage, headline
from harness.analysis.evidence import gather
from harness.analysis.overfit import THRESHOLDS, analyse_data
from harness.analysis.verdicts import robust_reference, twin_tests
from harness.store import Store
from harness.store.doc_index import rebuild


def test_robust_reference_recovers_the_spread_and_ignores_a_few_contaminated() -> None:
    rng = np.random.default_rng(0)
    tau, se = 0.03, 0.02
    gaps = 0.10 + rng.normal(0, tau, 200) + rng.normal(0, se, 200)
    centre, spread, se_c, k = robust_reference(gaps, [se] * 200)
    assert k == 200 and abs(centre - 0.10) < 0.01 and 0.02 < spread < 0.04 and se_c < 0.005
    dirty = np.concatenate([gaps, [0.6] * 10])  # 5% undeclared contaminated references
    c2, s2, _, _ = robust_reference(dirty, [se] * 210)
    assert abs(c2 - centre) < 0.005 and abs(s2 - spread) < 0.01
    assert robust_reference([], []) == (0.0, 0.0, 0.0, 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verdicts") / "v.duckdb"
    build(path, models=40, docs=300, sources=4, seed=2)
    return path


def test_every_model_not_exposed_is_a_reference_and_the_explanation_names_the_pool(store: Path) -> None:
    data = gather(Store(store), twins=TWINS)
    roots = sum(1 for m in data.models["model_id"] if not data.graph.parents.get(m))
    tests = twin_tests(data, THRESHOLDS)
    assert max(x.ref.k for x in tests) > roots  # fine-tunes and merges count, not only parentless models
    flags = [f for f in analyse_data(data) if f.signal == "twin_gap" and "reference" in f.evidence]
    assert flags and all("models not exposed on the suite" in f.explanation for f in flags)
    assert all(f.evidence["smallest_detectable_excess"] >= THRESHOLDS.gap_min for f in flags)
    assert all(f.evidence["excess_over_reference"] >= f.evidence["smallest_detectable_excess"] * 0.5 for f in flags)


def test_too_few_references_is_not_calibrated_never_flagged_except_aligned(store: Path, tmp_path: Path) -> None:
    few = tmp_path / "few.duckdb"
    shutil.copy(store, few)
    with Store(few).db.write() as con:  # keep the twin runs of 4 models only
        keep = [r[0] for r in con.execute("SELECT DISTINCT model_id FROM runs WHERE split = 'twin' "
                                          "ORDER BY model_id LIMIT 4").fetchall()]
        con.execute("DELETE FROM samples WHERE run_id IN (SELECT run_id FROM runs WHERE split IN ('twin', "
                    "'heldout') AND NOT list_contains(?, model_id))", [keep])
        con.execute("DELETE FROM scores WHERE run_id IN (SELECT run_id FROM runs WHERE split IN ('twin', "
                    "'heldout') AND NOT list_contains(?, model_id))", [keep])
        con.execute("DELETE FROM runs WHERE split IN ('twin', 'heldout') AND NOT list_contains(?, model_id)", [keep])
        con.execute("DELETE FROM evolve_candidates")
        rebuild(con)  # samples changed by hand: their per-document index too
    data = gather(Store(few), twins=TWINS)  # independent twins: a natural gap is unknown with <= 3 references
    tests = twin_tests(data, THRESHOLDS)
    assert tests and not any(x.ref.calibrated for x in tests) and not any(x.flagged for x in tests)
    assert not [f for f in analyse_data(data) if f.signal == "twin_gap"]
    cover = coverage(data, THRESHOLDS)
    assert {c.status for c in cover if c.model_id in keep and c.suite == "zoo_math"} == {"not calibrated"}
    missing = [c for c in cover if c.model_id not in keep and c.suite == "zoo_math"]
    assert missing and all(c.status == "not checkable" and "--suite zoo_math --split" in c.detail for c in missing)
    assert "not checked" in headline(cover)
    aligned = gather(Store(few), twins=mapped_twins(few, 300))  # the same items: zero by design, calibrated
    perturbed = [x for x in twin_tests(aligned, THRESHOLDS) if x.kind == "perturbed"]
    assert perturbed and all(x.ref.calibrated for x in perturbed)
    for x in perturbed:  # ... and the other models' (less its parents) median or line: the larger p stands
        zero = 0.5 * math.erfc(x.row["gap"] / x.row["se"] / math.sqrt(2))
        if x.ref.centre == 0.0 and "zero by design" in x.ref.basis:
            assert x.p == pytest.approx(zero)
        else:
            assert 2 <= x.ref.k <= 3 and "tested against them and against the aligned twin's zero" in x.ref.basis
            assert x.p >= zero


def test_power_and_coverage_of_every_model_and_suite(store: Path) -> None:
    data = gather(Store(store), twins=mapped_twins(store, 300))
    cover = coverage(data, THRESHOLDS)
    public = data.scores[data.scores["split"] == "public"]
    assert len(cover) == len(public[["model_id", "suite"]].drop_duplicates())  # every (model, public suite)
    assert {c.status for c in cover if c.suite == "zoo_code"} == {"no twin"}
    checked = [c for c in cover if c.status == "checked"]
    assert checked and all(c.mde is not None and c.mde >= THRESHOLDS.gap_min for c in checked)
    assert all("smallest detectable excess" in c.detail and " pts" in c.detail for c in checked)
    tests = twin_tests(data, THRESHOLDS)
    paired = [x for x in tests if x.row["paired"]]
    unpaired = [x for x in tests if not x.row["paired"]]
    assert np.median([x.mde for x in paired]) < np.median([x.mde for x in unpaired])  # pairing buys power
    flagged = {(c.model, c.suite) for c in cover if c.flagged}
    assert ("zoo-overfit", "zoo_math") in flagged


def test_calibration_benchmark_false_flags_at_or_below_nominal(tmp_path: Path) -> None:
    import json

    from benchmarks.calibrate_overfit import main

    main(["--stores", "1", "--models", "80", "--docs", "300", "--json", str(tmp_path / "cal.json")])
    report = json.loads((tmp_path / "cal.json").read_text())
    for signal, r in report["false_flag_rate"].items():
        assert r["trials"] > 0 and r["ci"][0] <= r["nominal"], signal
    big = report["recall"]["memorised >= 10"]
    assert big["flagged"] >= 1 and big["plants"] == 5
