"""The coverage of the store by the twin-gap tests: for every (model, suite) on the suite's default split, checked
(with the smallest excess it could flag and the tier that would reach `gap_min`) or why not.

    rows = coverage(data, THRESHOLDS)        # CoverageTable: one Coverage per (model, public suite), checked or
                                             # why not (rows.column("status"): a column without the objects)
    headline(rows)                           # 'no twin-gap flags among N (model, suite) checked; M not checked ...'

The tests themselves, their references and power, are harness/analysis/verdicts.py's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from harness.analysis.evidence import MIN_PAIRED_DOCS, MIN_PAIRED_SEEDS, Data
from harness.analysis.flags import Thresholds
from harness.analysis.verdicts import TwinTests, twin_tests

if TYPE_CHECKING:
    from pathlib import Path


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


def tier_for(suite: str, items: int | None, known: dict | None = None) -> str:
    """The smallest tier of the suite whose per-task limit gives `items` (estimated as limit x tasks); `known` keeps
    each suite's tiers between calls (a reference read at each model's ability needs a different number of items
    for each model: one suite.yaml read per suite, not per model)."""
    if items is None:
        return "none"
    key = ("tiers", suite)
    if known is None or key not in known:
        try:
            from harness.suites import load_suite

            s = load_suite(suite)
            tiers = (len(s.split_tasks()), sorted(s.tiers.items(),
                                                  key=lambda kv: math.inf if kv[1] is None else kv[1]))
        except Exception:  # noqa: BLE001 - a suite of the store without a suite.yaml: say the number of items
            tiers = None
        if known is not None:
            known[key] = tiers
    else:
        tiers = known[key]
    if tiers is None:
        return f"~{items:,} items"
    tasks, ordered = tiers
    for tier, limit in ordered:
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
    widest = spread >= tests.se_centre[i]  # what keeps the target out of reach: the spread, or the line's stderr
    width = spread if widest else tests.se_centre[i]
    key = (suite, items, kind, n, paired) if items is not None else (None, widest, round(width, 3), kind, n, paired)
    tail = reaches.get(key)
    if tail is None:
        goal = f"{100 * t.gap_min:.0f} pts"
        reach = (f"{goal} needs tier {tier_for(suite, items, reaches)}" if items is not None else
                 f"no tier reaches {goal}: the natural gap alone varies by {100 * spread:.1f} pts between models"
                 if widest else f"no tier reaches {goal}: the reference at its ability has a stderr of "
                 f"{100 * width:.1f} pts (more reference models near its ability would narrow it)")
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
