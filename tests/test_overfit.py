"""The overfitting analysis on a real store filled with planted cases (benchmarks/gen_store.py): which models are
flagged, with what evidence, and that the clean merges are not; plus `harness overfit` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.gen_store import TWINS, build, mapped_twins
from harness.analysis.evidence import gather, gather_base
from harness.analysis.flags import THRESHOLDS, bh_reject
from harness.analysis.lineage import Graph
from harness.analysis.overfit import analyse, confusion
from harness.store import Store
from harness.store.doc_index import rebuild
from harness.store.frames import edges

REPO = Path(__file__).resolve().parent.parent
PLANTED = {"zoo-overfit", "evo-best", "merge-of-overfit", "spec-code", "creep-4"}
CLEAN = {"merge-linear", "merge-ties", "merge-slerp", "merge-dare", "merge-deep", "merge-deeper", "src-a", "ref-1"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("overfit") / "planted.duckdb"
    truth = build(path, models=40, docs=500, sources=4, seed=0)
    return path, truth, mapped_twins(path, 500)


@pytest.fixture(scope="module")
def flags(planted):
    return analyse(Store(planted[0]), twins=planted[2])


def _by(flags, model: str, signal: str | None = None):
    return [f for f in flags if f.model == model and (signal is None or f.signal == signal)]


def test_planted_cases_are_flagged_and_clean_merges_are_not(planted, flags) -> None:
    counts = confusion(flags, planted[1])
    assert counts["false_flags"] == 0, counts["false"]
    assert counts["true_flags"] >= 9 and counts["positives"] == 10, counts  # 8 before calibration on the spread
    flagged = {f.model for f in flags if f.severity != "info"}
    assert PLANTED <= flagged
    assert not (CLEAN & flagged)


def test_memorised_model_has_a_high_twin_gap_with_paired_evidence(flags) -> None:
    (f,) = _by(flags, "zoo-overfit", "twin_gap")
    ev = f.evidence
    assert f.severity == "high" and f.suite == "zoo_math"
    assert ev["twin_kind"] == "perturbed" and ev["paired"] is True and ev["n"] == 500
    assert ev["excess_ci"][0] > THRESHOLDS.gap_min and ev["gap_ci"][0] < ev["gap"] < ev["gap_ci"][1]
    assert ev["in_sample"] is True and ev["origin"] == "new"
    assert ev["excess_over_parents"] > 0.2  # its parent src-a has an ordinary gap
    assert "zoo-overfit scores" in f.explanation and f.explanation.endswith(".")


def test_inherited_gap_is_told_apart_from_a_new_one(flags) -> None:
    (f,) = _by(flags, "merge-of-overfit", "twin_gap")
    assert f.evidence["origin"] == "inherited" and "inherits" in f.explanation


def test_over_searched_evolve_run_and_exposure(planted, flags) -> None:
    assert _by(flags, "evo-best", "twin_gap")[0].severity == "high"
    (info,) = _by(flags, "evo-best", "exposure")
    assert info.severity == "info" and info.evidence["process"] == "evolve"
    (train,) = _by(flags, "zoo-overfit", "exposure")
    store = Store(planted[0])
    descendants = store.descendants(store.get_model("zoo-overfit").model_id)
    assert train.evidence["process"] == "train" and train.evidence["descendants_in_sample"] == len(descendants) >= 1


def test_specialisation_cost(flags) -> None:
    (f,) = _by(flags, "spec-code", "specialisation")
    assert f.suite == "zoo_code" and f.evidence["gain_ci"][0] > 0
    assert "zoo_lang" in f.evidence["losses"] and f.evidence["losses"]["zoo_lang"]["ci"][1] < 0
    assert not _by(flags, "spec-code", "twin_gap")  # it is not contaminated, only specialised


def test_creeping_chain_diverges(flags) -> None:
    (f,) = _by(flags, "creep-4", "lineage_divergence")
    chain = [c["model"] for c in f.evidence["chain"]]
    assert chain[-4:] == ["creep-1", "creep-2", "creep-3", "creep-4"] and chain[0] in {"src-b", "src-d"}
    assert f.evidence["public_gain"] > f.evidence["twin_gain"] + THRESHOLDS.divergence_min


def test_exposure_is_inherited_by_descendants_only_on_the_selected_split(planted) -> None:
    data = gather(Store(planted[0]), twins=planted[2])
    ids = {n: m for m, n in data.names.items()}
    assert data.in_sample(ids["merge-of-overfit"], "zoo_math", "public")
    assert not data.in_sample(ids["merge-of-overfit"], "zoo_math", "heldout")
    assert not data.in_sample(ids["merge-linear"], "zoo_math", "public")
    gaps = data.gaps.set_index(["model_id", "suite", "kind"])
    assert bool(gaps.loc[(ids["src-a"], "zoo_math", "perturbed"), "paired"]) is True  # twin split shares doc ids
    assert bool(gaps.loc[(ids["src-a"], "zoo_math", "heldout"), "paired"]) is False  # held-out docs: other items


def test_twins_from_a_plain_mapping_match_twins_inferred_from_runs(planted) -> None:
    inferred = analyse(Store(planted[0]))  # no mapping: suite.yaml twins, then the splits the runs show
    plain = analyse(Store(planted[0]), twins=TWINS)  # plain refs: independent, as inferred ones are
    key = sorted((f.model, f.signal, f.suite, f.severity) for f in plain)
    assert sorted((f.model, f.signal, f.suite, f.severity) for f in inferred) == key


def test_in_memory_lineage_agrees_with_the_store(planted) -> None:
    store = Store(planted[0])
    graph = Graph.from_edges(edges(store))
    mid = store.get_model("creep-4").model_id
    assert graph.ancestors(mid) == store.ancestors(mid)
    assert graph.depths([mid])[mid] == store.depth(mid) == 4


def test_benjamini_hochberg() -> None:
    assert bh_reject([0.001, 0.01, 0.04, 0.5], 0.05) == [True, True, False, False]
    assert bh_reject([0.2, 0.3], 0.05) == [False, False]


def test_cli_overfit_json_and_errors(planted) -> None:
    cmd = [sys.executable, "-m", "harness.cli.__main__", "--db", str(planted[0]), "overfit"]
    out = subprocess.run([*cmd, "--json", "--min-severity", "high"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["severity"] for r in rows} == {"high"}
    assert any(r["model"] == "zoo-overfit" and r["signal"] == "twin_gap" for r in rows)
    bad = subprocess.run([*cmd, "--min-severity", "hihg"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "did you mean 'high'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    nowhere = str(planted[0].parent / "no.duckdb")
    missing = subprocess.run([sys.executable, "-m", "harness.cli.__main__", "--db", nowhere, "overfit"],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "no harness store" in missing.stderr
    assert not (planted[0].parent / "no.duckdb").exists()  # the analysis never creates a store


def test_cli_overfit_counts_flags_against_a_truth_file(planted, tmp_path: Path) -> None:
    from harness.analysis.overfit import confusion

    path, truth, _ = planted
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    cmd = [sys.executable, "-m", "harness.cli.__main__", "--db", str(path), "overfit", "--truth",
           str(tmp_path / "truth.json")]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["confusion"]
    assert got == confusion(analyse(Store(path)), truth) and got["true_flags"] >= 5
    text = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout
    assert f"{got['true_flags']} true flags of {got['positives']} positives" in text
    (tmp_path / "bad.json").write_text('{"zoo-overfit": "yes"}')
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "bad.json")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "true/false/null" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_over_searched_evolve_run_is_flagged_from_its_own_records(flags, tmp_path: Path) -> None:
    (f,) = _by(flags, "evo-best", "twin_gap")
    ev = f.evidence["evolve"]  # the run-based flag carries the search's own evidence too
    assert ev["evolve_id"] == "evo-overfit" and ev["excess_ci"][0] > THRESHOLDS.gap_min
    assert ev["history"][-1]["best_fitness"] > ev["history"][0]["best_fitness"]
    # an evolve whose pick was never evaluated by `harness eval`: the candidates' fitness and held-out scores suffice
    path = tmp_path / "evolve_only.duckdb"
    build(path, models=0, docs=100, seed=3)
    store = Store(path)
    best = store.get_model("evo-best").model_id
    with store.db.write() as con:  # this test's own store: drop the pick's evaluation runs
        con.execute("DELETE FROM samples WHERE run_id IN (SELECT run_id FROM runs WHERE model_id = ?)", [best])
        con.execute("DELETE FROM scores WHERE run_id IN (SELECT run_id FROM runs WHERE model_id = ?)", [best])
        con.execute("DELETE FROM runs WHERE model_id = ?", [best])
        rebuild(con)  # samples changed by hand: their per-document index too
    (only,) = [g for g in analyse(store, twins=mapped_twins(path, 100)) if g.model == "evo-best"
               and g.signal == "twin_gap"]
    assert only.evidence["source"] == "evolve" and only.suite == "zoo_math" and only.severity == "high"
    assert "Evolve run evo-overfit" in only.explanation


def test_gathered_alike_in_a_read_and_in_a_write(planted) -> None:
    """gather_base reads the suite scores on a second connection beside the lineage walk in a read, and on the
    one connection inside a write: the same data either way."""
    store = Store(planted[0])
    outside = gather_base(store, twins=planted[2])
    with store.writing():
        inside = gather_base(store, twins=planted[2])
    keys = ["model_id", "suite", "split"]
    assert len(outside.scores) > 100
    pd.testing.assert_frame_equal(outside.scores.sort_values(keys, ignore_index=True),
                                  inside.scores.sort_values(keys, ignore_index=True))
    pd.testing.assert_frame_equal(outside.models, inside.models)
    assert outside.exposure == inside.exposure and outside.twins == inside.twins
