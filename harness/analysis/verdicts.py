"""Twin-gap verdicts calibrated on the spread of real models, with their power and the coverage of the store.

    tests = twin_tests(data, THRESHOLDS)     # TwinTests: columns, one test per (model, suite, twin kind) with both
                                             # scores; tests[i] (or iterating) makes the TwinTest of gap row i
    rows = coverage(data, THRESHOLDS)        # CoverageTable: one Coverage per (model, public suite), checked or
                                             # why not (rows.column("status"): a column without the objects)

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from harness.analysis.evidence import MIN_PAIRED_DOCS, MIN_PAIRED_SEEDS, Data
from harness.analysis.flags import Thresholds, bh_reject, p_one_sided
from harness.analysis.gap_rows import GapRows, gap_rows

if TYPE_CHECKING:
    from pathlib import Path

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


class Coverage(NamedTuple):
    """One row of the coverage table (CoverageTable keeps the rows as plain tuples and makes these when read);
    `to_dict` for JSON."""

    model_id: str
    model: str
    suite: str
    status: str        # checked | not calibrated | not checkable | no twin
    flagged: bool
    detail: str        # mde and tier, the command that would make it checkable, ...
    mde: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class CoverageTable(Sequence[Coverage]):
    """The coverage rows, kept as plain tuples (the cyclic collector stops tracking a tuple of plain values, not a
    named one: 30,000 rows at 10,000 models that a Streamlit process keeps); a Coverage made per row read."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    @classmethod
    def from_dicts(cls, dicts: Sequence[dict[str, Any]]) -> CoverageTable:
        return cls([tuple(Coverage(**d)) for d in dicts])

    def column(self, name: str) -> list:
        j = Coverage._fields.index(name)
        return [r[j] for r in self.rows]

    def to_dicts(self) -> list[dict[str, Any]]:
        fields = Coverage._fields
        return [dict(zip(fields, r, strict=True)) for r in self.rows]

    def to_parquet(self, path: Path) -> None:
        """The rows as a Parquet file, a column per field (a tenth of the CPU of the same rows as JSON objects)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(Coverage._fields)
        types = {"flagged": pa.bool_(), "mde": pa.float64()}  # the others are strings
        pq.write_table(pa.table([pa.array(c, type=types.get(f, pa.string()))
                                 for f, c in zip(Coverage._fields, cols, strict=True)], names=list(Coverage._fields)),
                       path)

    @classmethod
    def from_parquet(cls, path: Path) -> CoverageTable:
        import pyarrow.parquet as pq

        cols = pq.read_table(path).to_pydict()
        return cls(list(zip(*(cols[f] for f in Coverage._fields), strict=True)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Coverage:  # type: ignore[override]
        if isinstance(i, slice):
            return [Coverage._make(r) for r in self.rows[i]]  # type: ignore[return-value]
        return Coverage._make(self.rows[i])

    def __iter__(self) -> Iterator[Coverage]:
        return map(Coverage._make, self.rows)


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
    exposed: dict[str, set[tuple[str, str]]] = {}  # per model, the (suite, split) it is in-sample on (data.in_sample),
    default = data.default_splits                  # found once per distinct exposure set rather than once per row
    by_set: dict[int, set[tuple[str, str]]] = {}   # (models share their exposure sets: lineage.Graph.propagate)
    twin_of: dict[str, tuple[str, str]] = {}       # the gap row's twin "suite:split" as a pair
    in_sample_twin: set[int] = set()                # rows whose model is exposed on the row's twin
    data.verdicts_cache["in_sample_twin"] = in_sample_twin
    c = rows.col
    for i, (mid, suite, kind, twin, gap, se) in enumerate(zip(c["model_id"], c["suite"], c["kind"], c["twin"],
                                                              c["gap"], c["se"], strict=True)):
        if mid not in exposed:  # (a selection without a split is on the suite's default split, inlined)
            selections = data.exposure.get(mid, ())
            found = by_set.get(id(selections))
            if found is None:
                found = by_set[id(selections)] = {(s, default.get(s, "public") if sp is None else sp)
                                                  for s, sp, _p, _w in selections}
            exposed[mid] = found
        on = exposed[mid]
        if on:
            pair = twin_of.get(twin)
            if pair is None:
                t_suite, _, t_split = str(twin).partition(":")
                pair = twin_of[twin] = (t_suite, t_split or default.get(t_suite, "public"))
            if pair in on:
                in_sample_twin.add(i)
                continue
            if (suite, default.get(suite, "public")) in on:
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


def coverage(data: Data, t: Thresholds, flags: Sequence[Any] = ()) -> CoverageTable:
    """For every (model, suite) scored on the suite's default split: checked, not calibrated, not checkable (with
    the command that would make it checkable) or no twin (a suite that is itself another's twin, such as gsm_plus,
    is still a benchmark of the leaderboard: listed).
    `flags` (flags.Flag) marks as flagged the checked ones with a twin_gap (an evolve run's too) or
    lineage_divergence flag."""
    marked = {(f.model_id, f.suite) for f in flags if f.signal in ("twin_gap", "lineage_divergence")}
    tests = twin_tests(data, t)
    mine = _per_pair(tests, (data.verdicts_cache or {}).get("in_sample_twin", set()))
    sc = data.scores
    public = data.on_default_split(sc)
    pairs = set(zip(sc["model_id"][public].tolist(), sc["suite"][public].tolist(), strict=True))
    scored: set[tuple[str, str]] = set()  # (model, 'suite:split') of every score, read once if needed
    reaches: dict[tuple, str] = {}
    names, twinned = data.names, {s: bool(data.twins.get(s)) for s in {s for _m, s in pairs}}
    out = []
    for _name, suite, mid in sorted((names.get(m, m), s, m) for m, s in pairs):  # by name, then suite
        name = names.get(mid, mid[:12])
        first, best, flagged, inside = mine.get((mid, suite), (-1, -1, False, -1))
        if not twinned[suite]:
            out.append((mid, name, suite, "no twin", False, "no twin exists for this suite (suite.yaml twins:)", None))
        elif first < 0:
            out.append(tuple(_not_checkable(data, mid, name, suite, scored)))
        elif best < 0 and inside >= 0:
            out.append((mid, name, suite, "not checkable", False,
                        f"its twin {tests.rows.col['twin'][inside]} is in-sample (it or an ancestor was selected on "
                        "it): a gap against an optimistic twin score is biased toward 0", None))
        elif best < 0:
            basis = tests.refs[first].basis if not tests.refs[first].calibrated else "the gap's stderr is unknown"
            out.append((mid, name, suite, "not calibrated", False, basis, None))
        else:
            out.append((mid, name, suite, "checked", flagged or (mid, suite) in marked,
                        _checked_detail(tests, best, suite, t, reaches), tests.mde[best]))
    return CoverageTable(out)


def _per_pair(tests: TwinTests, in_sample: set[int]) -> dict[tuple[str, str], tuple[int, int, bool, int]]:
    """(model, suite) -> (its first test, its calibrated test of the smallest mde (the first of equal ones) or -1,
    whether any of its tests is flagged, its first test on a twin it is in-sample on or -1), over the columns. A
    test on an in-sample twin checks nothing unless it flagged (the twin's score is optimistic: its gap is biased
    toward 0)."""
    out: dict[tuple[str, str], tuple[int, int, bool, int]] = {}
    for i, ((mid, suite, _kind), ref, mde, flagged) in enumerate(zip(
            tests.rows.keys_, tests.refs, tests.mde, tests.flagged, strict=True)):
        first, best, any_flagged, inside = out.get((mid, suite), (i, -1, False, -1))
        if i in in_sample and not flagged:
            inside = i if inside < 0 else inside
        elif ref.calibrated and mde == mde and (best < 0 or mde < tests.mde[best]):  # NaN mde: stderr unknown
            best = i
        out[(mid, suite)] = (first, best, any_flagged or flagged, inside)
    return out


def _checked_detail(tests: TwinTests, i: int, suite: str, t: Thresholds, reaches: dict) -> str:
    """The coverage detail of a checked (model, suite), from its test `i`; `reaches` keeps all but the number,
    shared by many rows (tier_for reads a suite.yaml: once per suite and items needed)."""
    items, spread, mde = tests.items[i], tests.refs[i].spread, tests.mde[i]
    kind, n, paired = tests.rows.keys_[i][2], tests.rows.col["n"][i], tests.rows.col["paired"][i]
    key = (suite, items, kind, n, paired) if items is not None else (None, spread, kind, n, paired)
    tail = reaches.get(key)
    if tail is None:
        goal = f"{100 * t.gap_min:.0f} pts"
        reach = (f"{goal} needs tier {tier_for(suite, items)}" if items is not None else
                 f"no tier reaches {goal}: the natural gap alone varies by {100 * spread:.1f} pts between models")
        tail = reaches[key] = f" pts on twin {kind} (n={int(n)}, {'paired' if paired else 'unpaired'}); {reach}"
    return f"smallest detectable excess {100 * mde:.1f}{tail}"


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
    status, flagged = ((rows.column("status"), rows.column("flagged")) if isinstance(rows, CoverageTable)
                       else ([r.status for r in rows], [r.flagged for r in rows]))
    counts = {s: status.count(s) for s in ("checked", "not calibrated", "not checkable", "no twin")}
    counts["flagged"] = sum(flagged)
    counts["not_checked"] = len(rows) - counts["checked"]
    return counts


def headline(rows: Sequence[Coverage]) -> str:
    c = coverage_summary(rows)
    lead = f"{c['flagged']} flagged" if c["flagged"] else "no twin-gap flags"
    return (f"{lead} among {c['checked']} (model, suite) checked; {c['not_checked']} not checked "
            f"({c['not checkable']} without a twin run, {c['not calibrated']} not calibrated, "
            f"{c['no twin']} without a twin)")
