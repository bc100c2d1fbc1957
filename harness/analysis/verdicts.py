"""Twin-gap verdicts calibrated on the spread of real models, with their power (the coverage of the store they give
is harness/analysis/coverage.py's).

    tests = twin_tests(data, THRESHOLDS)     # TwinTests: columns, one test per (model, suite, twin kind) with both
                                             # scores; tests[i] (or iterating) makes the TwinTest of gap row i

A model's gap (public - twin) is compared with the *natural* gap of the reference pool: every model with that gap
that is exposed neither on the suite nor on that twin (no declared selection on either by itself or an
ancestor), fine-tunes and merges included, less the model itself and its parents (in pools of up to LOO_MAX
models), read at the model's ability. The natural gap grows with ability: a model at chance level loses nothing
on a harder twin, a capable one does (the zoo: chance-level models -2 to -6 pts on the held-out split, the math
expert's capable merges +10 to +16), so a pool of weak models says little of a strong model's gap. Ability x = the
public score. (Not the twin's, nor the mean: the spread of natural gaps between models is on the twin side, and
would tilt a line through them by -tau^2/2 / var(x); the public score's own sampling error tilts it by + its
variance v_n / var(x), which is removed: slope = (b var(x) - v_n) / (var(x) - v_n), v_n = the median sampling
variance of the gaps / 2, the public's share of an unpaired gap's; for paired gaps an underestimate, which leaves
the slope a little steep: conservative for a clean model, a weaker test of a public-only lift.) The pool is
summarised by a robust line, so a few undeclared contaminated references cannot move it: Theil-Sen slope b (the
median of the pairwise slopes; SLOPE_PAIRS pairs drawn with a fixed seed in larger pools), level = median(gap -
slope x), residual scale s = 1.4826 MAD of the residuals with a k / (k - 2) correction for the two fitted
parameters, between-model spread tau^2 = max(0, s^2 - median sampling variance), stderr of the line at ability x
1.2533 * max(s, sqrt(median sampling variance)) * sqrt(1/k + (x - mean x)^2 / Sxx): a model beyond the pool's
abilities gets a wide reference, not a confident extrapolation. No line (slope 0: the median of the gaps, stderr
1.2533 * max(s, sqrt(median sampling variance)) / sqrt(k), s their 1.4826 MAD) when the abilities' variance is under
twice v_n (alike abilities: the slope would be noise) or the slope is within SLOPE_Z of its stderrs (max(s,
sqrt(median sampling variance)) / sqrt(Sxx)). References more than TRIM_Z (tau^2 + median sampling variance)^0.5
above the first fit are left out and the line fitted again, once (undeclared overfit references sit at high public
scores with large gaps: they tilt the line up where overfit models are read).
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
from dataclasses import dataclass, replace
from typing import Any

from harness.analysis.evidence import Data
from harness.analysis.flags import Thresholds, bh_reject, p_one_sided
from harness.analysis.gap_rows import GapRows, gap_rows

Z80 = 0.841621  # one-sided z for 80% power
MAD_SD = 1.4826
MEDIAN_SE = 1.2533
TRIM_Z = 2.5    # a reference this many (tau^2 + sampling variance)^0.5 above the line is left out (one pass)
SLOPE_Z = 2.0   # a slope is used when it exceeds this many of its stderrs (residual scale / sqrt(Sxx)); else 0
SLOPE_PAIRS = 200_000  # pairwise slopes drawn for the Theil-Sen slope of a larger pool (all pairs up to ~630 models)
LOO_MAX = 50    # pools up to this size leave the model and its parents out; a larger pool's median and MAD barely
                # move with one model (and computing a pool per model would cost O(models^2))


@dataclass(frozen=True)
class Reference:
    centre: float      # the natural gap at ability `x` (a pool's line is stored at its mean ability)
    spread: float      # tau: between-model sd of the natural gap around the line
    se: float          # stderr of the centre at `x`
    k: int             # reference models
    calibrated: bool
    basis: str         # how the reference was obtained, for the explanation
    slope: float = 0.0  # natural gap per unit of ability (Theil-Sen)
    x: float = math.nan  # the ability the centre is read at
    x_mean: float = math.nan  # the pool's mean ability
    sxx: float = 0.0   # sum of squared deviations of the pool's abilities
    alt: Reference | None = None  # aligned twin, too few references: theirs, tested too (the stricter test stands)
    reach: tuple[float, float] = (-math.inf, math.inf)  # a median's twin scores it calibrates (the pool's range)

    def lever(self, x: float) -> float:
        """sqrt(1 + k (x - mean)^2 / Sxx): how much wider the line's stderr is at `x` than at the pool's mean."""
        return math.sqrt(1 + self.k * (x - self.x_mean) ** 2 / self.sxx) if self.sxx > 0 and x == x else 1.0

    def centre_at(self, x: float) -> float:
        """The natural gap the line gives at ability `x` (the centre itself without a line)."""
        return self.centre + self.slope * (x - self.x_mean) if self.sxx > 0 and x == x else self.centre

    def at(self, x: float) -> Reference:
        """The reference read at ability `x` (a model's public score)."""
        return replace(self, centre=self.centre_at(x), se=self.se * self.lever(x), x=x)


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


def median_variance(ses: Any) -> float:
    """The median sampling variance of the known stderrs (an unknown one, NaN, says nothing of it: it zeroed tau)."""
    import numpy as np

    s = np.asarray(ses, dtype=float)
    known = s[~np.isnan(s)]
    return float(np.median(known ** 2)) if known.size else 0.0


def robust_reference(gaps: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float, int]:
    """(centre, tau, se of centre, k) of reference gaps: median, MAD spread less sampling error."""
    import numpy as np

    g, s = np.asarray(gaps, dtype=float), np.asarray(ses, dtype=float)
    k = int(g.size)
    if k == 0:
        return 0.0, 0.0, 0.0, 0
    centre = float(np.median(g))
    sd = MAD_SD * float(np.median(np.abs(g - centre))) if k > 1 else 0.0
    var = median_variance(s)
    tau2 = max(0.0, sd ** 2 - var)
    se_centre = MEDIAN_SE * max(sd, math.sqrt(var)) / math.sqrt(k)
    return centre, math.sqrt(tau2), se_centre, k


def reference_line(gaps: Sequence[float], ses: Sequence[float], xs: Sequence[float]
                   ) -> tuple[float, float, float, int, float, float, float, int]:
    """(level at the mean ability, tau, se of the level there, k, slope, mean ability, Sxx, references left out) of
    reference gaps against abilities: the Theil-Sen line, its robust residual spread less sampling error, fitted
    again without the references far above it (module docstring)."""
    import numpy as np

    g, s, x = (np.asarray(v, dtype=float) for v in (gaps, ses, xs))
    fit = _fit_line(g, s, x)
    centre, tau, _se, k, slope, x_mean, _sxx = fit
    if k < 3:
        return (*fit, 0)
    scale = math.sqrt(tau ** 2 + median_variance(s))
    keep = g - (centre + slope * (x - x_mean)) <= TRIM_Z * scale
    if keep.all() or keep.sum() < 3 or scale == 0:
        return (*fit, 0)
    return (*_fit_line(g[keep], s[keep], x[keep]), int((~keep).sum()))


def _fit_line(g: Any, s: Any, x: Any) -> tuple[float, float, float, int, float, float, float]:
    """reference_line's fit, once."""

    k = int(g.size)
    if k == 0:
        return 0.0, 0.0, 0.0, 0, 0.0, math.nan, 0.0
    var = median_variance(s)
    x_mean = float(x.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    v_n = var / 2  # the public score's sampling variance, in the gap's
    slope = 0.0
    if k > 2 and sxx / k > 2 * v_n:
        var_x = sxx / k
        slope = (theil_sen_slope(x, g) * var_x - v_n) / (var_x - v_n)
    level, sd = _level_and_spread(g - slope * x, k, slope != 0.0)
    if slope != 0.0 and abs(slope) * math.sqrt(sxx) < SLOPE_Z * max(sd, math.sqrt(var)):
        slope = 0.0  # no trend beyond noise: the median, as if there were no line
        level, sd = _level_and_spread(g, k, False)
    if slope == 0.0:
        sxx = 0.0
    tau2 = max(0.0, sd ** 2 - var)
    se_centre = MEDIAN_SE * max(sd, math.sqrt(var)) / math.sqrt(k)
    return level + slope * x_mean, math.sqrt(tau2), se_centre, k, slope, x_mean, sxx


def _level_and_spread(resid: Any, k: int, fitted: bool) -> tuple[float, float]:
    """Median of the residuals and their robust sd (1.4826 MAD; k / (k - 2) for a fitted slope)."""
    import numpy as np

    level = float(np.median(resid))
    sd = MAD_SD * float(np.median(np.abs(resid - level))) if k > 1 else 0.0
    return level, sd * math.sqrt(k / (k - 2)) if fitted and k > 2 else sd


def theil_sen_slope(x: Any, y: Any) -> float:
    """The median of (y_j - y_i) / (x_j - x_i) over pairs with x_i != x_j (all pairs, or SLOPE_PAIRS drawn with a
    fixed seed when there are more); 0.0 when no two abilities differ."""
    import numpy as np

    k = x.size
    if k < 2:
        return 0.0
    if k * (k - 1) // 2 <= SLOPE_PAIRS:
        i, j = np.triu_indices(k, 1)
    else:
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, k, SLOPE_PAIRS), rng.integers(0, k, SLOPE_PAIRS)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return 0.0
    return float(np.median((y[j][ok] - y[i][ok]) / dx[ok]))


def reference_pools(data: Data, rows: GapRows) -> dict[tuple[str, str], dict[str, tuple[float, float, float]]]:
    """(suite, kind) -> {model: (gap, se, ability)} of the models exposed neither on the suite nor on that twin (a
    selection on the twin makes its score in-sample: the model's gap is no natural one). Kept on `data`: read-only."""
    if data.verdicts_cache is None:
        data.verdicts_cache = {}
    if "pools" in data.verdicts_cache:
        return data.verdicts_cache["pools"]
    pools: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {}
    data.verdicts_cache["pools"] = pools
    in_sample_twin: set[int] = set()  # rows whose model is exposed on the row's twin
    data.verdicts_cache["in_sample_twin"] = in_sample_twin
    c = rows.col
    ability = abilities(rows)
    for i, (mid, suite, kind, twin, gap, se) in enumerate(zip(c["model_id"], c["suite"], c["kind"], c["twin"],
                                                              c["gap"], c["se"], strict=True)):
        if data.exposed_on(mid):  # the one in-sample rule (judge ratings on their split's questions): evidence's
            t_suite, _, t_split = str(twin).partition(":")
            if data.in_sample(mid, t_suite, t_split or None):
                in_sample_twin.add(i)
                continue
            if data.in_sample(mid, suite):
                continue
        pools.setdefault((suite, kind), {})[mid] = (gap, se, ability[i])
    return pools


def abilities(rows: GapRows) -> list[float]:
    """Per gap row, the model's ability on it: its public score (module docstring)."""
    return rows.col["public"]


def _reference(data: Data, pool: dict, mid: str, relation: str, t: Thresholds, memo: dict) -> Reference:
    """The reference of one test; one object per distinct pool less the left-out models (shared, frozen)."""
    skip = frozenset(m for m in (mid, *data.graph.parents.get(mid, ())) if m in pool) if len(pool) <= LOO_MAX \
        else frozenset()
    key = (id(pool), skip, relation == "aligned")
    if key not in memo:
        vals = [v for m, v in pool.items() if m not in skip]
        centre, tau, se_c, k, slope, x_mean, sxx, out = reference_line([v[0] for v in vals], [v[1] for v in vals],
                                                                       [v[2] for v in vals])
        if k >= t.min_reference:
            memo[key] = Reference(centre, tau, se_c, k, True, _pool_words(k, out, slope), slope, x_mean, x_mean, sxx,
                                  reach=_reach(vals) if not slope and relation != "aligned" else (-math.inf, math.inf))
        elif relation == "aligned":
            alt = None
            if k >= 2:
                note = f" (under {t.min_reference}: tested against them and against the aligned twin's zero by " \
                    "design, the stricter stands)"
                alt = Reference(centre, tau, se_c, k, True, _pool_words(k, out, slope) + note, slope, x_mean, x_mean,
                                sxx)
            memo[key] = Reference(0.0, 0.0, 0.0, k, True, "zero by design (aligned twin: the same items)", alt=alt)
        else:
            memo[key] = Reference(centre, tau, se_c, k, False,
                                  f"only {k} models not exposed on the suite or its twin (need {t.min_reference})")
    return memo[key]


def _pool_words(k: int, out: int, slope: float) -> str:
    """The reference pool in an explanation's words."""
    who = f"{k} models not exposed on the suite or its twin" + (f" ({out} far above it left out)" if out else "")
    return f"line through {who}, at its public score" if slope else f"median of {who}"


def _reach(vals: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The scores a median reference calibrates: its models' public and twin scores (public - gap), widened by half
    their range, and by at least two sampling stderrs of a score (the natural gap depends on ability: a pool of
    guessers says nothing of a capable model's, while a pool's own extremes, and a model whose public or twin score
    alone lies beyond them, are still read on it)."""
    scores = [v for g, _s, x in vals for v in (x, x - g) if v == v]
    if not scores:
        return -math.inf, math.inf
    lo, hi = min(scores), max(scores)
    widen = max((hi - lo) / 2, 2 * math.sqrt(median_variance([se for _g, se, _x in vals]) / 2))
    return lo - widen, hi + widen


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
    """Every twin-gap test as columns (test i is gap row i); a TwinTest is made only when one is asked for.
    `refs[i]` is row i's pool reference (shared by its pool, at the pool's mean ability); the test's own reference,
    read at the row's ability `x[i]`, is `tests[i].ref`."""

    def __init__(self, rows: GapRows, refs: list[Reference], x: list[float], se_centre: list[float],
                 excess: list[float], se: list[float], p: list[float], flagged: list[bool], mde: list[float],
                 items: list[int | None]) -> None:
        self.rows, self.refs, self.x, self.se_centre, self.excess, self.se, self.p = rows, refs, x, se_centre, \
            excess, se, p
        self.flagged, self.mde, self.items = flagged, mde, items

    def __len__(self) -> int:
        return len(self.p)

    def __getitem__(self, i: int) -> TwinTest:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]  # type: ignore[return-value]
        mid, suite, kind = self.rows.keys_[i]
        return TwinTest(mid, suite, kind, self.rows.row(i), self.refs[i].at(self.x[i]), self.excess[i], self.se[i],
                        self.p[i], self.flagged[i], self.mde[i], self.items[i])


def twin_tests(data: Data, t: Thresholds) -> TwinTests:
    """Every twin-gap test of the store with its verdict and power (cached on `data` per thresholds). Column-wise:
    one reference per distinct pool, read at each row's ability, the arithmetic over arrays (squares and tails
    through Python's own ** and erfc, so every figure is what the per-row formulas give), no object per row."""
    import numpy as np

    cache = data.verdicts_cache if data.verdicts_cache is not None else {}
    data.verdicts_cache = cache
    if t in cache:
        return cache[t]
    rows = gap_rows(data)
    refs = _references(data, rows, t)
    x = abilities(rows)
    se_gap, n = rows.col["se"], rows.col["n"]
    for i, (r, pub, tw) in enumerate(zip(refs, x, rows.col["twin_value"], strict=True)):
        if r.calibrated and tw == tw and pub == pub and (min(pub, tw) > r.reach[1] or max(pub, tw) < r.reach[0]):
            refs[i] = replace(r, calibrated=False, basis=f"no reference of its ability: the {r.k} models not exposed "
                              f"score {100 * r.reach[0]:.1f}-{100 * r.reach[1]:.1f} (widened), it {100 * pub:.1f} "
                              f"and {100 * tw:.1f} on the twin, and their gaps show no trend to read")
    se_c, excess, se, p = _against(rows, refs, x)
    least = list(excess)  # the smaller excess where two references are tested (both must clear gap_min)
    alt = [i for i, r in enumerate(refs) if r.alt is not None]
    if alt:  # an aligned twin with too few references: the stricter of zero by design and their line stands
        theirs = _against(rows, [refs[i].alt for i in alt], x, alt)
        for i, a_se_c, a_excess, a_se, a_p in zip(alt, *theirs, strict=True):
            least[i] = min(excess[i], a_excess)
            if a_p > p[i] or (a_p != a_p and p[i] == p[i]):
                refs[i], se_c[i], excess[i], se[i], p[i] = refs[i].alt, a_se_c, a_excess, a_se, a_p
    se = np.array(se, dtype=float)
    live = [i for i, r in enumerate(refs) if r.calibrated]
    rejected = np.zeros(len(refs), dtype=bool)
    rejected[[i for i, rej in zip(live, bh_reject([p[i] for i in live], t.fdr), strict=True) if rej]] = True
    z_crit = _z(t.fdr * max(1, int(rejected.sum())) / max(1, len(live)))
    flagged = (rejected & (np.array(least, dtype=float) >= t.gap_min)).tolist()
    target = (t.gap_min / (z_crit + Z80)) ** 2
    items = [_items_needed(s, m, target - r.spread ** 2 - c ** 2)
             for s, m, r, c in zip(se_gap, n, refs, se_c, strict=True)]
    mde = [max(t.gap_min, (z_crit + Z80) * s) if s == s else math.nan for s in se.tolist()]  # NaN: no power known
    cache[t] = tests = TwinTests(rows, refs, x, se_c, excess, se.tolist(), p, flagged, mde, items)
    return tests


def _against(rows: GapRows, refs: list[Reference], x: list[float], only: list[int] | None = None
             ) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per row (the rows `only`, in that order, with `refs` theirs), against its reference read at its ability:
    (se of the centre, excess, se, p)."""
    import numpy as np

    se_gap, gap = rows.col["se"], rows.array("gap")
    if only is not None:
        se_gap, gap, x = [se_gap[i] for i in only], gap[only], [x[i] for i in only]
    centre = [r.centre_at(a) for r, a in zip(refs, x, strict=True)]
    se_c = [r.se * r.lever(a) for r, a in zip(refs, x, strict=True)]
    excess = gap - np.array(centre, dtype=float)
    se = np.sqrt(np.array([s ** 2 + r.spread ** 2 + c ** 2 for s, r, c in zip(se_gap, refs, se_c, strict=True)],
                          dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):  # an unknown stderr (NaN): p NaN, never rejected
        z = np.where(se == 0, np.where(excess > 0, np.inf, 0.0), excess / se)
    return se_c, excess.tolist(), se.tolist(), [p_one_sided(v) for v in z.tolist()]


def _items_needed(se: float, n: Any, room: float) -> int | None:
    """Items for (z_crit + z_0.8) * se to reach the target, `room` = (target / (z_crit + z_0.8))^2 - tau^2 -
    se_centre^2: the sampling part shrinks as 1/n, the spread does not."""
    if room <= 0 or se != se:
        return None
    n = max(int(n or 0), 1)
    return max(n, math.ceil(se ** 2 * n / room))
