"""The analysis' column-wise structures against plain per-row ones, on a real DuckDB store with planted overfit
models: the unpaired twin gaps joined by position (twin_gaps._unpaired) against a pandas merge per twin, the gap rows
(gap_rows.GapRows) against a dict per row, the coverage table's columns and round trip, and the lineage's shared
sets against sets computed model by model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.gen_store import TWINS, build
from harness.analysis.coverage import Coverage, CoverageTable, coverage
from harness.analysis.evidence import Data, gather
from harness.analysis.gap_rows import GapRows, gap_rows
from harness.analysis.overfit import THRESHOLDS, analyse_data
from harness.analysis.twin_gaps import _unpaired
from harness.analysis.verdicts import twin_tests
from harness.store import Store


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    path = tmp_path_factory.mktemp("gapcols") / "s.duckdb"
    build(path, models=40, docs=60, sources=3, seed=4)
    return gather(Store(path), twins=TWINS)


def merged(data: Data) -> pd.DataFrame:
    """The unpaired gaps as one pandas merge on model_id per (suite, twin kind), suite by suite and kind by kind in
    name order."""
    sc, frames = data.scores, []
    for suite, kinds in sorted(data.twins.items()):
        split = data.default_split(suite)
        pub = sc[(sc["suite"] == suite) & (sc["split"] == split)]
        for kind, spec in sorted(kinds.items()):
            t_suite, _, t_split = spec.ref.partition(":")
            t_split = t_split or data.default_split(t_suite)
            m = pub.merge(sc[(sc["suite"] == t_suite) & (sc["split"] == t_split)], on="model_id", suffixes=("", "_t"))
            if not m.empty:
                frames.append(pd.DataFrame({
                    "model_id": m["model_id"], "suite": suite, "kind": kind, "twin": f"{t_suite}:{t_split}",
                    "relation": spec.relation, "public": m["value"], "twin_value": m["value_t"],
                    "se_public": m["se"], "se_twin": m["se_t"], "run_a": m["run_id"], "run_b": m["run_id_t"],
                    "n_public": m["n"], "n_twin": m["n_t"]}))
    g = pd.concat(frames, ignore_index=True)
    g["gap"] = g["public"] - g["twin_value"]
    g["se"] = np.sqrt(g["se_public"] ** 2 + g["se_twin"] ** 2)
    g["n"] = np.minimum(g["n_public"], g["n_twin"]).fillna(0).astype(int)
    g["paired"] = False
    return g


def test_unpaired_equals_a_merge_per_twin(data: Data) -> None:
    got = _unpaired(data)
    assert len(got) > 40
    pd.testing.assert_frame_equal(got, merged(data), check_exact=True)


def test_unpaired_with_a_model_scored_twice_is_the_merge_too(data: Data) -> None:
    """Two scores of one model on one split (not what suite_scores gives, but what a merge would pair twice)."""
    sc = data.scores
    again = sc[(sc["suite"] == "zoo_math") & (sc["split"] == data.default_split("zoo_math"))].iloc[:3]
    twice = Data(**{**vars(data), "scores": pd.concat([sc, again], ignore_index=True)})
    got, want = _unpaired(twice), merged(twice)
    assert len(got) > len(_unpaired(data))
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_gap_rows_read_as_a_dict_per_row(data: Data) -> None:
    rows = gap_rows(data)
    assert gap_rows(data) is rows
    g = data.gaps
    want = {(r["model_id"], r["suite"], r["kind"]): r for r in g.to_dict("records")}
    assert list(rows) == list(want) and len(rows) == len(want)
    assert all(rows[k] == r for k, r in want.items())
    i = len(rows) // 2
    assert rows.array("gap")[i] == rows.col["gap"][i] == g["gap"].iloc[i]
    assert ("nobody", "zoo_math", "heldout") not in rows and rows.get(("nobody", "zoo_math", "heldout")) is None


def test_gap_rows_keep_the_last_of_a_repeated_key_in_its_first_place() -> None:
    cols = {"model_id": ["a", "b", "a"], "suite": ["s"] * 3, "kind": ["k"] * 3, "gap": [1.0, 2.0, 3.0]}
    rows = GapRows(cols)
    want = {}
    for vals in zip(*cols.values(), strict=True):
        r = dict(zip(cols, vals, strict=True))
        want[(r["model_id"], r["suite"], r["kind"])] = r
    assert list(rows.items()) == list(want.items())
    assert rows.index == {("a", "s", "k"): 0, ("b", "s", "k"): 1}


def test_coverage_table_columns_and_round_trip(data: Data) -> None:
    table = coverage(data, THRESHOLDS, analyse_data(data))
    rows = list(table)
    assert len(rows) == len(table) > 40 and all(isinstance(c, Coverage) for c in rows)
    assert table[3] == rows[3] and table[-1] == rows[-1] and table[2:5] == rows[2:5]
    for name in Coverage._fields:
        assert table.column(name) == [getattr(c, name) for c in rows]
    assert table.to_dicts() == [c.to_dict() for c in rows]
    again = CoverageTable.from_dicts(table.to_dicts())
    assert list(again) == rows and all(type(r) is tuple for r in again.rows)
    assert {"checked", "no twin"} <= set(table.column("status"))


def test_coverage_table_parquet_round_trip(data: Data, tmp_path: Path) -> None:
    """What the dashboard keeps on disk: the same plain tuples back, None and float bits included."""
    table = coverage(data, THRESHOLDS, analyse_data(data))
    table.to_parquet(tmp_path / "c.parquet")
    again = CoverageTable.from_parquet(tmp_path / "c.parquet")
    assert again.rows == table.rows and all(type(r) is tuple for r in again.rows)
    assert None in table.column("mde") and any(isinstance(m, float) for m in table.column("mde"))
    assert [type(v) for v in again.rows[0]] == [type(v) for v in table.rows[0]]
    CoverageTable([]).to_parquet(tmp_path / "empty.parquet")
    assert CoverageTable.from_parquet(tmp_path / "empty.parquet").rows == []


def test_lineage_sets_are_shared_and_equal_to_per_model_ones(data: Data) -> None:
    g = data.graph
    models = data.models["model_id"].tolist()
    roots = g.roots_of(models)

    def ancestors_and_self(m: str) -> set[str]:
        seen, todo = {m}, [m]
        while todo:
            for p in g.parents.get(todo.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    for m in models:
        assert roots[m] == {a for a in ancestors_and_self(m) if not g.parents.get(a)}
        own = {x for a in ancestors_and_self(m) for x in data.exposure.get(a, ()) if x[3] == a}
        assert data.exposure[m] == own
    by_value: dict[frozenset, int] = {}
    for sets in (roots.values(), data.exposure.values()):
        for s in sets:
            assert by_value.setdefault(s, id(s)) == id(s)  # equal sets: one object
    assert len({id(s) for s in roots.values()}) < len(roots)
    assert all(type(ps) is tuple for ps in g.parents.values())


def test_twin_tests_read_by_index_and_slice(data: Data) -> None:
    tests = twin_tests(data, THRESHOLDS)
    every = list(tests)
    assert len(every) == len(tests) == len(gap_rows(data))
    assert tests[-1] == every[-1] and tests[1:4] == every[1:4] and tests[::7] == every[::7]
    assert [x.flagged for x in every] == tests.flagged and any(tests.flagged)
    assert all(x.row == gap_rows(data)[(x.model_id, x.suite, x.kind)] for x in every[:50])
