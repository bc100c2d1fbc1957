"""An audit of the overfitting verdicts (docs/overfitting.md) on realistic stores written with the library's writers:
each test plants a truth (clean or overfit), states what the verdict should be, and is marked xfail (strict) where
the shipped code gets it wrong, with the figures measured and a hand computation of the expected ones. Nothing here
changes the statistics; an xfail that starts passing means the bug was fixed (drop the mark)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from harness.analysis.divergence import divergence_flags
from harness.analysis.evidence import gather
from harness.analysis.flags import THRESHOLDS, p_one_sided
from harness.analysis.verdicts import twin_tests
from harness.store import Store
from tests.test_overfit_edges import _data
from tests.test_overfit_stores import GUESSERS, _models, _run, aligned_tests


def _natural(public: float) -> float:
    """A natural gap that is zero at chance and grows with ability (the 'floor' model of the calibration
    benchmark): 0.2 x (public - 0.25)."""
    return 0.2 * max(0.0, public - 0.25)


def _heldout(path: Path, scores: dict[str, tuple[float, float]], n: int,
             merges: dict[str, list[str]] | None = None) -> tuple:
    """Models scored (public, heldout) on suite s, n documents at the binomial stderr of 50%: Data, tests by name."""
    se = (0.25 / n) ** 0.5
    store = Store(path)
    names = list(dict.fromkeys([*scores, *(merges or {}), *(p for ps in (merges or {}).values() for p in ps)]))
    _models(store, names, merges or {})
    for name, (public, twin) in scores.items():
        _run(store, name, "s", "public", "s_public", "acc", public, se, n=n)
        _run(store, name, "s", "heldout", "s_heldout", "acc", twin, se, n=n)
    data = gather(store, twins={"s": {"heldout": "s:heldout"}})
    return data, {data.names[t.model_id]: t for t in twin_tests(data, THRESHOLDS)}


@pytest.mark.xfail(strict=True, reason="aligned twins skip the 'reach' check: a pool of guessers calibrates a capable "
                   "clean model against a natural gap of ~0 and flags the 10 points every capable model loses on "
                   "renumbered items (p 4.6e-6 at 600 items)")
def test_a_pool_of_guessers_does_not_calibrate_a_capable_model_on_an_aligned_twin(tmp_path: Path) -> None:
    """An aligned perturbed twin (item i of s:twin is item i of s:public with new numbers), 600 items. Six
    chance-level references answer each split by fresh 25% draws (paired gap ~0); c is clean and capable: 80% on
    public, 70% on the twin, the 10 points zoo-math loses on the zoo's perturbed twin (docs/overfitting.md: "zero is
    the design's claim, not a measurement: renumbered items can be harder for every capable model"). The guessers
    say nothing of what a capable model loses, as on an independent twin, where the same pool gives "no reference
    of its ability". On the aligned twin the reach check is skipped (verdicts._reference: `relation != "aligned"`)
    and c is flagged against their median (~0): excess ~9.7 points, p ~5e-6."""
    n = 600
    rng = np.random.default_rng(1)
    models = {f"g{i}": ((rng.random(n) < 0.25).astype(int).tolist(), (rng.random(n) < 0.25).astype(int).tolist())
              for i in range(6)}
    public = [1 if i < 480 else 0 for i in range(n)]
    models["c"] = (public, [0 if i < 90 else 1 if 480 <= i < 510 else public[i] for i in range(n)])
    _data, tests = aligned_tests(tmp_path, models, n)
    c = tests["c"]
    diffs = [a - b for a, b in zip(*models["c"], strict=True)]  # by hand: c's paired gap, 10 points
    assert c.row["paired"] and c.row["gap"] == pytest.approx(statistics.mean(diffs)) == pytest.approx(0.10)
    guess_gaps = [statistics.mean(a) - statistics.mean(b) for m, (a, b) in models.items() if m != "c"]
    assert max(abs(g) for g in guess_gaps) < 0.05 and c.ref.k == 6  # the pool: six guessers, gaps within 5 points
    print("c:", c.ref, c.excess, c.p)
    assert not c.flagged


@pytest.mark.xfail(strict=True, reason="lineage divergence compares a merge's gap with its roots' raw gaps, not their "
                   "excess over the line at each one's ability: a clean merge more capable than its chance-level "
                   "roots diverges by slope x public gain (6.5 pts, p 0.0057 at 1,000 items) and is flagged")
def test_a_clean_merge_of_merges_more_capable_than_its_roots_does_not_diverge(tmp_path: Path) -> None:
    """Natural gap 0.2 x (public - 0.25) for every model (12 guessers, 4 capable references, and a family): E an
    expert (public 0.80), B1 and B2 at chance, M1 = merge(E, B1) at 0.78, M2 = merge(M1, B2) at 0.76; every model
    sits exactly on the natural line (no model has any excess over it: the twin-gap tests agree, excess < 0.1 pts).
    docs/overfitting.md defines the divergence as "the model's excess over the references' gap minus its roots'
    excess": 0 here. The code takes M2's gap minus its roots' mean gap: 0.102 - (0.110 + 0 + 0) / 3 = +6.5 points,
    which is slope x public gain (0.2 x 0.327), and with tau ~0 (the pool's MAD is the guessers') flags it."""
    capable = {f"k{i}": (p, p - _natural(p)) for i, p in enumerate((0.62, 0.70, 0.78, 0.86))}
    family = {m: (p, p - _natural(p)) for m, p in (("E", 0.80), ("B1", 0.25), ("B2", 0.25), ("M1", 0.78),
                                                  ("M2", 0.76))}
    data, tests = _heldout(tmp_path / "div.duckdb", {**GUESSERS, **capable, **family}, 1000,
                           merges={"M1": ["E", "B1"], "M2": ["M1", "B2"]})
    assert all(abs(tests[m].excess) < 0.002 and not tests[m].flagged for m in ("E", "M1", "M2"))
    raw = _natural(0.76) - (_natural(0.80) + 0 + 0) / 3  # what the code calls the divergence, by hand
    flags = {f.model: f for f in divergence_flags(data, THRESHOLDS)}
    print({m: f.evidence for m, f in flags.items()}, "raw divergence by hand", raw)
    assert raw == pytest.approx(0.0653, abs=1e-4)
    assert "M2" not in flags


@pytest.mark.xfail(strict=True, reason="trimming a reference far above the line can leave fewer than min_reference: "
                   "two undeclared memorisers (+25 pts) among 4 clean models trim each other out of the pool and "
                   "are 'not calibrated' (p 3e-20, not flagged), their basis saying 'only 4 models'")
def test_two_memorisers_do_not_hide_each_other_by_trimming(tmp_path: Path) -> None:
    """Four clean models (public 0.55-0.70, natural gap 0.2 x (public - 0.25) within 1 point) and two undeclared
    memorisers m1 (0.90) and m2 (0.88), each 25 points beyond the natural gap. Each memoriser's pool is the four
    clean models and the other memoriser: five, min_reference. The first fit holds five; the other memoriser is far
    above it and left out, the refit holds four, and the verdict becomes "only 4 models not exposed ... (need 5)":
    not calibrated, never flagged. Against the four clean models' own line (the trim's intent) m1's excess is
    ~30 points at z > 9."""
    clean = {f"r{i}": (p, p - _natural(p) - off) for i, (p, off) in enumerate(
        ((0.55, 0.01), (0.60, -0.01), (0.65, 0.0), (0.70, 0.005)))}
    memorisers = {"m1": (0.90, 0.90 - _natural(0.90) - 0.25), "m2": (0.88, 0.88 - _natural(0.88) - 0.25)}
    _data_, tests = _heldout(tmp_path / "trim.duckdb", {**clean, **memorisers}, 600)
    xs = [p for p, _t in clean.values()]
    gaps = [p - t for p, t in clean.values()]
    slope = float(np.polyfit(xs, gaps, 1)[0])  # the clean models' own line (least squares, by hand)
    at = statistics.mean(gaps) + slope * (0.90 - statistics.mean(xs))
    excess = 0.38 - at
    print("m1:", tests["m1"].ref, "excess over the clean line", excess)
    assert excess > 0.25 and tests["m1"].p < 1e-10  # the evidence is overwhelming ...
    assert tests["m1"].ref.k == 4 and "only 4 models" in tests["m1"].ref.basis
    assert tests["m1"].flagged and tests["m2"].flagged  # ... yet neither is flagged


def _clean_store_flagged(rng: np.random.Generator, k: int, n: int, tau: float) -> bool:
    """One store of k clean models: ability ~ U(0.30, 0.85), a flat natural gap of 2 points that varies between
    models by tau, public and twin scores each with binomial sampling error at n items, unpaired. Any flag is false."""
    sp = (0.25 / n) ** 0.5
    x = rng.uniform(0.30, 0.85, k)
    public = x + rng.normal(0, sp, k)
    twin = x - 0.02 - rng.normal(0, tau, k) + rng.normal(0, sp, k)
    data = _data([(f"m{i}", a, b, sp * math.sqrt(2)) for i, (a, b) in enumerate(zip(public, twin, strict=True))])
    return any(twin_tests(data, THRESHOLDS).flagged)


@pytest.mark.xfail(strict=True, reason="small pools underestimate the spread of natural gaps (1.4826 MAD of a few "
                   "residuals, read on the normal): with the 3-point spread the docs measure, 13.5% of stores of 9 "
                   "clean models at 1,000 items get a false twin-gap flag, against <= 1% under BH at q = 0.01")
def test_small_stores_of_clean_models_are_flagged_at_the_nominal_rate() -> None:
    """200 stores of 9 clean models each (natural gaps spread by tau = 3 points between models, the figure
    docs/overfitting.md gives; 1,000 items per split, unpaired). Every hypothesis is null, so Benjamini-Hochberg at
    q = 0.01 bounds the chance of any flag in a store by 1% (with valid p-values). Allowing Monte Carlo error (the
    99.9% binomial quantile of 1% at 200 stores is 8, scipy), more than 8 stores flagged is a calibration failure.
    Measured: 27 of 200 (the natural gap is flat here: the spread estimate is at fault, not the line)."""
    rng = np.random.default_rng(0)
    flagged = sum(_clean_store_flagged(rng, 9, 1000, 0.03) for _ in range(200))
    bound = int(binom.ppf(0.999, 200, 0.01))  # 8: stores a valid 1% test exceeds once in 1,000 such checks
    print("stores with a false flag:", flagged, "of 200; bound", bound)
    assert flagged <= bound


@pytest.mark.xfail(strict=True, reason="the reference is read at the public score, which a public-only lift inflates: "
                   "a lift L shows as L x (1 - slope); at slope 0.2 a 6-point lift reads 4.8 (< gap_min) and can "
                   "never be flagged, however many items (the spec's 'weaker test', at its threshold)")
def test_a_six_point_public_only_lift_can_be_flagged_with_enough_items(tmp_path: Path) -> None:
    """Twenty clean references on the natural line 0.2 x (public - 0.25), public 0.30-0.85 (no noise: the line is
    known exactly), and o: true ability 0.75, public lifted 6 points to 0.81 (memorised items), twin unchanged at
    0.75 - 0.10. 10,000 items per split (stderr 0.5 points a score), so sampling error is no excuse. The reference is
    read at 0.81: 0.2 x 0.56 = 11.2 points, the excess 6 - 0.2 x 6 = 4.8 points, under gap_min (5): o cannot be
    flagged."""
    refs = {f"r{i}": (float(p), float(p) - _natural(float(p))) for i, p in enumerate(np.linspace(0.30, 0.85, 20))}
    o = (0.81, 0.75 - _natural(0.75))
    _data_, tests = _heldout(tmp_path / "lift.duckdb", {**refs, "o": o}, 10_000)
    t = tests["o"]
    print("o:", t.ref, t.excess, t.p)
    assert t.ref.slope == pytest.approx(0.2, abs=0.01)
    assert t.excess == pytest.approx(0.06 - 0.2 * 0.06, abs=0.002)  # by hand: 4.8 points
    assert p_one_sided(t.excess / t.se) < 1e-6  # overwhelming evidence of an excess ...
    assert t.flagged  # ... of a 6-point lift, never flagged
