"""Twin-gap verdicts calibrated on the spread of real models, with their power and the coverage of the store.

    tests = twin_tests(data, THRESHOLDS)     # one TwinTest per (model, suite, twin kind) with both scores
    rows = coverage(data, THRESHOLDS)        # one Coverage per (model, public suite): checked or why not

A model's gap (public - twin) is compared with the *natural* gap of the reference pool: every model with that gap
that is not exposed on the suite (no declared selection on it by itself or an ancestor), fine-tunes and merges
included, less the model itself and its parents (in pools of up to LOO_MAX models). The pool is summarised
robustly, so a few undeclared contaminated references cannot move it: centre = median, between-model spread
tau^2 = max(0, (1.4826 MAD)^2 - median sampling variance), stderr of the centre 1.2533 * 1.4826 MAD / sqrt(k).
The excess gap is tested against sqrt(se_model^2 + tau^2 + se_centre^2) (random effects: a clean model's gap
differs from the centre by the spread of real models plus sampling error). Fewer than `Thresholds.min_reference`
references: "not calibrated" (shown, never flagged), unless the twin is aligned (the same items: its natural gap
is zero by design).

Power: the smallest excess a test could have flagged is (z_crit + z_0.8) * se, z_crit the one-sided z of the
Benjamini-Hochberg cutoff actually used (q * max(1, R) / m), floored at `gap_min`; and the items needed for it to
reach `gap_min` (sampling error shrinks with items, the spread between models does not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.analysis.evidence import MIN_PAIRED_DOCS, MIN_PAIRED_SEEDS, Data

if TYPE_CHECKING:
    from harness.analysis.overfit import Thresholds

Z80 = 0.841621  # one-sided z for 80% power
MAD_SD = 1.4826
MEDIAN_SE = 1.2533
LOO_MAX = 50    # pools up to this size leave the model and its parents out; a larger pool's median and MAD barely
                # move with one model (and computing a pool per model would cost O(models^2))


@dataclass(frozen=True)
class Reference:
    centre: float
    spread: float      # tau: between-model sd of the natural gap
    se: float          # stderr of the centre
    k: int             # reference models
    calibrated: bool
    basis: str         # how the reference was obtained, for the explanation


@dataclass(frozen=True)
class TwinTest:
    model_id: str
    suite: str
    kind: str
    row: dict
    ref: Reference
    excess: float
    se: float          # sqrt(se_gap^2 + tau^2 + se_centre^2)
    p: float
    flagged: bool = False
    mde: float = math.nan          # smallest excess this test could have flagged (80% power)
    items_needed: int | None = None  # items for mde to reach gap_min; None: unreachable (spread too large)


@dataclass(frozen=True)
class Coverage:
    model_id: str
    model: str
    suite: str
    status: str        # checked | not calibrated | not checkable | no twin
    flagged: bool
    detail: str        # mde and tier, the command that would make it checkable, ...
    mde: float | None = None


def _p(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _z(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - min(max(p, 1e-300), 0.5))


def robust_reference(gaps: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float, int]:
    """(centre, tau, se of centre, k) of reference gaps: median, MAD spread less sampling error."""
    import numpy as np

    g, s = np.asarray(gaps, dtype=float), np.asarray(ses, dtype=float)
    k = int(g.size)
    if k == 0:
        return 0.0, 0.0, 0.0, 0
    centre = float(np.median(g))
    sd = MAD_SD * float(np.median(np.abs(g - centre))) if k > 1 else 0.0
    tau2 = max(0.0, sd ** 2 - float(np.median(s ** 2)))
    se_centre = MEDIAN_SE * max(sd, float(np.sqrt(np.median(s ** 2)))) / math.sqrt(k)
    return centre, math.sqrt(tau2), se_centre, k


def _pools(data: Data, rows: dict) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(suite, kind) -> {model: (gap, se)} of the models not exposed on the suite (kept on `data`: read-only)."""
    if data.verdicts_cache is None:
        data.verdicts_cache = {}
    if "pools" in data.verdicts_cache:
        return data.verdicts_cache["pools"]
    pools: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    data.verdicts_cache["pools"] = pools
    exposed: dict[str, set[str]] = {}  # per model, the suites it is in-sample on (data.in_sample on the default
    default = data.default_splits      # split), found once per model rather than once per row
    for (mid, suite, kind), r in rows.items():
        if mid not in exposed:  # (sp == data.default_split(s), inlined: ~27 selections per model at 10,000 models)
            exposed[mid] = {s for s, sp, _p, _w in data.exposure.get(mid, ()) if sp is None
                            or sp == default.get(s, "public")}
        if suite not in exposed[mid]:
            pools.setdefault((suite, kind), {})[mid] = (r["gap"], r["se"])
    return pools


def _reference(data: Data, pool: dict, mid: str, relation: str, t: Thresholds, memo: dict) -> Reference:
    """The reference of one test; one object per distinct pool less the left-out models (shared, frozen)."""
    skip = frozenset(m for m in (mid, *data.graph.parents.get(mid, ())) if m in pool) if len(pool) <= LOO_MAX \
        else frozenset()
    key = (id(pool), skip, relation == "aligned")
    if key not in memo:
        vals = [v for m, v in pool.items() if m not in skip]
        centre, tau, se_c, k = robust_reference([v[0] for v in vals], [v[1] for v in vals])
        if k >= t.min_reference:
            memo[key] = Reference(centre, tau, se_c, k, True, f"median of {k} models not exposed on the suite")
        elif relation == "aligned":
            memo[key] = Reference(0.0, 0.0, 0.0, k, True, "zero by design (aligned twin: the same items)")
        else:
            memo[key] = Reference(centre, tau, se_c, k, False, f"only {k} models not exposed on the suite (need "
                                                               f"{t.min_reference})")
    return memo[key]


def twin_tests(data: Data, t: Thresholds) -> list[TwinTest]:
    """Every twin-gap test of the store with its verdict and power (cached on `data` per thresholds). Column-wise:
    one reference per distinct pool, the arithmetic over arrays (squares and tails through Python's own ** and
    erfc, so every figure is what the per-row formulas give), one TwinTest per row made once."""
    import numpy as np

    from harness.analysis.overfit import _gap_rows, bh_reject

    cache = data.verdicts_cache if data.verdicts_cache is not None else {}
    data.verdicts_cache = cache
    if t in cache:
        return cache[t]
    rows = _gap_rows(data)
    pools, memo, empty = _pools(data, rows), {}, {}
    refs = [_reference(data, pools.get((suite, kind), empty), mid, r.get("relation", "independent"), t, memo)
            for (mid, suite, kind), r in rows.items()]
    rs = list(rows.values())
    excess = np.array([r["gap"] for r in rs], dtype=float) - np.array([x.centre for x in refs], dtype=float)
    se = np.sqrt(np.array([r["se"] ** 2 + x.spread ** 2 + x.se ** 2 for r, x in zip(rs, refs, strict=True)],
                          dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, excess / se, np.where(excess > 0, np.inf, 0.0))
    p = [_p(v) for v in z.tolist()]
    live = [i for i, x in enumerate(refs) if x.calibrated]
    rejected = {i for i, rej in zip(live, bh_reject([p[i] for i in live], t.fdr), strict=True) if rej}
    z_crit = _z(t.fdr * max(1, len(rejected)) / max(1, len(live)))
    tests = [TwinTest(mid, suite, kind, r, ref, e, s, pv, i in rejected and e >= t.gap_min,
                      max(t.gap_min, (z_crit + Z80) * s), _items_needed(r, ref, z_crit, t.gap_min))
             for i, ((mid, suite, kind), r, ref, e, s, pv) in enumerate(zip(
                 rows, rs, refs, excess.tolist(), se.tolist(), p, strict=True))]
    cache[t] = tests
    return tests


def _items_needed(row: dict, ref: Reference, z_crit: float, target: float) -> int | None:
    """Items for (z_crit + z_0.8) * se to reach `target`: the sampling part shrinks as 1/n, the spread does not."""
    room = (target / (z_crit + Z80)) ** 2 - ref.spread ** 2 - ref.se ** 2
    n = max(int(row.get("n") or 0), 1)
    if room <= 0:
        return None
    return max(n, math.ceil(row["se"] ** 2 * n / room))


def tier_for(suite: str, items: int | None) -> str:
    """The smallest tier of the suite whose per-task limit gives `items` (estimated as limit x tasks)."""
    if items is None:
        return "none"
    try:
        from harness.suites import load_suite

        s = load_suite(suite)
    except Exception:  # noqa: BLE001 - a suite of the store without a suite.yaml: say the number of items
        return f"~{items:,} items"
    tasks = len(s.split_tasks())
    for tier, limit in sorted(s.tiers.items(), key=lambda kv: math.inf if kv[1] is None else kv[1]):
        if limit is None or limit * tasks >= items:
            return f"{tier} (~{items:,} items)"
    return f"~{items:,} items"


def coverage(data: Data, t: Thresholds, flags: Sequence[Any] = ()) -> list[Coverage]:
    """For every (model, suite) scored on the suite's default split: checked, not calibrated, not checkable (with
    the command that would make it checkable) or no twin (a suite that is itself another's twin, such as gsm_plus,
    is still a benchmark of the leaderboard: listed).
    `flags` (overfit.Flag) marks as flagged the checked ones with a twin_gap (an evolve run's too) or
    lineage_divergence flag."""
    marked = {(f.model_id, f.suite) for f in flags if f.signal in ("twin_gap", "lineage_divergence")}
    tests: dict[tuple[str, str], list] = {}  # (model, suite) -> [its first test, its best calibrated, any flagged]
    for x in twin_tests(data, t):
        mine = tests.get((x.model_id, x.suite))
        if mine is None:
            mine = tests[(x.model_id, x.suite)] = [x, None, False]
        if x.ref.calibrated and (mine[1] is None or x.mde < mine[1].mde):  # min(): the first of equal ones
            mine[1] = x
        mine[2] = mine[2] or x.flagged
    sc = data.scores[["model_id", "suite", "split"]]  # the columns used: the filter copies them
    public = sc[sc["split"] == sc["suite"].map(data.default_split)]
    pairs = set(zip(public["model_id"].tolist(), public["suite"].tolist(), strict=True))
    scored: set[tuple[str, str]] = set()  # (model, 'suite:split') of every score, read once if needed
    reaches: dict[tuple, str] = {}
    out = []
    for mid, suite in sorted(pairs, key=lambda ms: (data.names.get(ms[0], ms[0]), ms[1])):
        name = data.names.get(mid, mid[:12])
        mine = tests.get((mid, suite))
        if not data.twins.get(suite):
            out.append(Coverage(mid, name, suite, "no twin", False,
                                "no twin exists for this suite (suite.yaml twins:)"))
        elif mine is None:
            out.append(_not_checkable(data, mid, name, suite, scored))
        elif mine[1] is None:
            out.append(Coverage(mid, name, suite, "not calibrated", False, mine[0].ref.basis))
        else:
            best = mine[1]
            out.append(Coverage(mid, name, suite, "checked", mine[2] or (mid, suite) in marked,
                                _checked_detail(best, suite, t, reaches), best.mde))
    return out


def _checked_detail(best: TwinTest, suite: str, t: Thresholds, reaches: dict) -> str:
    """The coverage detail of a checked (model, suite); `reaches` keeps the second half, shared by many rows."""
    key = (suite, best.items_needed) if best.items_needed is not None else (None, best.ref.spread)
    reach = reaches.get(key)
    if reach is None:
        goal = f"{100 * t.gap_min:.0f} pts"
        reach = reaches[key] = (
            f"{goal} needs tier {tier_for(suite, best.items_needed)}" if best.items_needed is not None else
            f"no tier reaches {goal}: the natural gap alone varies by {100 * best.ref.spread:.1f} pts between models")
    return (f"smallest detectable excess {100 * best.mde:.1f} pts on twin {best.kind} (n={int(best.row['n'])}, "
            f"{'paired' if best.row['paired'] else 'unpaired'}); {reach}")


def _not_checkable(data: Data, mid: str, name: str, suite: str, scored: set) -> Coverage:
    refs = sorted({s.ref for s in data.twins[suite].values()})
    if not scored:
        sc = data.scores
        scored.update(zip(sc["model_id"].tolist(), (sc["suite"] + ":" + sc["split"]).tolist(), strict=True))
    if any((mid, r if ":" in r else f"{r}:{data.default_split(r)}") in scored for r in refs):
        return Coverage(mid, name, suite, "not checkable", False, "twin run not paired (fewer than "
                        f"{MIN_PAIRED_DOCS} mapped items from {MIN_PAIRED_SEEDS} seeds): rerun both with a larger "
                        "--tier or --limit")
    cmds = "; ".join(f"harness eval {name} --suite {r.partition(':')[0]}"
                     + (f" --split {r.partition(':')[2]}" if r.partition(":")[2] else "") for r in refs)
    return Coverage(mid, name, suite, "not checkable", False, f"no twin run: {cmds}")


def coverage_summary(rows: Sequence[Coverage]) -> dict[str, Any]:
    """Counts for a headline: 'no flags among N checked; M not checked'."""
    counts = {s: sum(r.status == s for r in rows) for s in ("checked", "not calibrated", "not checkable", "no twin")}
    counts["flagged"] = sum(r.flagged for r in rows)
    counts["not_checked"] = len(rows) - counts["checked"]
    return counts


def headline(rows: Sequence[Coverage]) -> str:
    c = coverage_summary(rows)
    lead = f"{c['flagged']} flagged" if c["flagged"] else "no twin-gap flags"
    return (f"{lead} among {c['checked']} (model, suite) checked; {c['not_checked']} not checked "
            f"({c['not checkable']} without a twin run, {c['not calibrated']} not calibrated, "
            f"{c['no twin']} without a twin)")
