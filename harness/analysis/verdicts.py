"""Twin-gap verdicts calibrated on the spread of real models, with their power (the coverage of the store they give
is harness/analysis/coverage.py's).

    tests = twin_tests(data, THRESHOLDS)     # TwinTests: columns, one test per (model, suite, twin kind) with both
                                             # scores; tests[i] (or iterating) makes the TwinTest of gap row i

A model's gap (public - twin) is compared with the *natural* gap of the reference pool: every model with that gap
that is exposed neither on the suite nor on that twin (no declared selection on either by itself or an
ancestor), fine-tunes and merges included, less the model itself and its parents (in pools of up to LOO_MAX
models). The pool is summarised robustly, so a few undeclared contaminated references cannot move it: centre =
median, between-model spread tau^2 = max(0, (1.4826 MAD)^2 - median sampling variance), stderr of the centre
1.2533 * max(1.4826 MAD, sqrt(median sampling variance)) / sqrt(k).
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
from typing import Any

from harness.analysis.evidence import Data
from harness.analysis.flags import Thresholds, bh_reject, p_one_sided
from harness.analysis.gap_rows import GapRows, gap_rows

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
    known = s[~np.isnan(s)]  # an unknown stderr (NaN) says nothing of the sampling variance (it zeroed tau)
    var = float(np.median(known ** 2)) if known.size else 0.0
    tau2 = max(0.0, sd ** 2 - var)
    se_centre = MEDIAN_SE * max(sd, math.sqrt(var)) / math.sqrt(k)
    return centre, math.sqrt(tau2), se_centre, k


def reference_pools(data: Data, rows: GapRows) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """(suite, kind) -> {model: (gap, se)} of the models exposed neither on the suite nor on that twin (a selection
    on the twin makes its score in-sample: the model's gap is no natural one). Kept on `data`: read-only."""
    if data.verdicts_cache is None:
        data.verdicts_cache = {}
    if "pools" in data.verdicts_cache:
        return data.verdicts_cache["pools"]
    pools: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    data.verdicts_cache["pools"] = pools
    in_sample_twin: set[int] = set()  # rows whose model is exposed on the row's twin
    data.verdicts_cache["in_sample_twin"] = in_sample_twin
    c = rows.col
    for i, (mid, suite, kind, twin, gap, se) in enumerate(zip(c["model_id"], c["suite"], c["kind"], c["twin"],
                                                              c["gap"], c["se"], strict=True)):
        if data.exposed_on(mid):  # the one in-sample rule (judge ratings on their split's questions): evidence's
            t_suite, _, t_split = str(twin).partition(":")
            if data.in_sample(mid, t_suite, t_split or None):
                in_sample_twin.add(i)
                continue
            if data.in_sample(mid, suite):
                continue
        pools.setdefault((suite, kind), {})[mid] = (gap, se)
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
            memo[key] = Reference(centre, tau, se_c, k, True,
                                  f"median of {k} models not exposed on the suite or its twin")
        elif relation == "aligned":
            memo[key] = Reference(0.0, 0.0, 0.0, k, True, "zero by design (aligned twin: the same items)")
        else:
            memo[key] = Reference(centre, tau, se_c, k, False,
                                  f"only {k} models not exposed on the suite or its twin (need {t.min_reference})")
    return memo[key]


def _references(data: Data, rows: GapRows, t: Thresholds) -> list[Reference]:
    """Per gap row, its reference (a pool larger than LOO_MAX leaves no one out: one lookup per pool)."""
    pools, memo, empty, large = reference_pools(data, rows), {}, {}, {}
    c = rows.col
    out = []
    for mid, suite, kind, relation in zip(c["model_id"], c["suite"], c["kind"], c["relation"], strict=True):
        pool = pools.get((suite, kind), empty)
        if len(pool) > LOO_MAX:
            key = (suite, kind, relation == "aligned")
            ref = large.get(key)
            if ref is None:
                ref = large[key] = _reference(data, pool, mid, relation, t, memo)
            out.append(ref)
        else:
            out.append(_reference(data, pool, mid, relation, t, memo))
    return out


class TwinTests(Sequence[TwinTest]):
    """Every twin-gap test as columns (test i is gap row i); a TwinTest is made only when one is asked for."""

    def __init__(self, rows: GapRows, refs: list[Reference], excess: list[float], se: list[float],
                 p: list[float], flagged: list[bool], mde: list[float], items: list[int | None]) -> None:
        self.rows, self.refs, self.excess, self.se, self.p = rows, refs, excess, se, p
        self.flagged, self.mde, self.items = flagged, mde, items

    def __len__(self) -> int:
        return len(self.p)

    def __getitem__(self, i: int) -> TwinTest:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]  # type: ignore[return-value]
        mid, suite, kind = self.rows.keys_[i]
        return TwinTest(mid, suite, kind, self.rows.row(i), self.refs[i], self.excess[i], self.se[i], self.p[i],
                        self.flagged[i], self.mde[i], self.items[i])


def twin_tests(data: Data, t: Thresholds) -> TwinTests:
    """Every twin-gap test of the store with its verdict and power (cached on `data` per thresholds). Column-wise:
    one reference per distinct pool, the arithmetic over arrays (squares and tails through Python's own ** and
    erfc, so every figure is what the per-row formulas give), no object per row."""
    import numpy as np

    cache = data.verdicts_cache if data.verdicts_cache is not None else {}
    data.verdicts_cache = cache
    if t in cache:
        return cache[t]
    rows = gap_rows(data)
    refs = _references(data, rows, t)
    se_gap, n = rows.col["se"], rows.col["n"]
    excess = rows.array("gap") - np.array([x.centre for x in refs], dtype=float)
    se = np.sqrt(np.array([s ** 2 + x.spread ** 2 + x.se ** 2 for s, x in zip(se_gap, refs, strict=True)],
                          dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):  # an unknown stderr (NaN): p NaN, never rejected
        z = np.where(se == 0, np.where(excess > 0, np.inf, 0.0), excess / se)
    p = [p_one_sided(v) for v in z.tolist()]
    live = [i for i, x in enumerate(refs) if x.calibrated]
    rejected = np.zeros(len(refs), dtype=bool)
    rejected[[i for i, rej in zip(live, bh_reject([p[i] for i in live], t.fdr), strict=True) if rej]] = True
    z_crit = _z(t.fdr * max(1, int(rejected.sum())) / max(1, len(live)))
    flagged = (rejected & (excess >= t.gap_min)).tolist()
    room = {id(x): (t.gap_min / (z_crit + Z80)) ** 2 - x.spread ** 2 - x.se ** 2 for x in refs}
    items = [_items_needed(s, m, room[id(x)]) for s, m, x in zip(se_gap, n, refs, strict=True)]
    mde = [max(t.gap_min, (z_crit + Z80) * s) if s == s else math.nan for s in se.tolist()]  # NaN: no power known
    cache[t] = tests = TwinTests(rows, refs, excess.tolist(), se.tolist(), p, flagged, mde, items)
    return tests


def _items_needed(se: float, n: Any, room: float) -> int | None:
    """Items for (z_crit + z_0.8) * se to reach the target, `room` = (target / (z_crit + z_0.8))^2 - tau^2 -
    se_centre^2: the sampling part shrinks as 1/n, the spread does not."""
    if room <= 0 or se != se:
        return None
    n = max(int(n or 0), 1)
    return max(n, math.ceil(se ** 2 * n / room))
