"""Twin maps: the shipped maps are what they claim (built from question text, bijections where aligned), pairing
happens only through a map, and a map that does not match its data stops the analysis (exit 2, nothing paired)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gen_store import TWINS, build, mapped_twins
from harness.analysis.evidence import gather
from harness.errors import HarnessError
from harness.store import Store
from harness.store.doc_index import rebuild
from harness.suite_schema import TwinSpec
from harness.suites import load_suite
from harness.twinmaps import load_map

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "suites"


def _shipped():
    for name in ("mmlu", "gsm8k", "mmlu_redux", "bbh", "mgsm"):
        suite = load_suite(name)
        for kind, spec in suite.twins.items():
            if spec.map:
                yield name, kind, spec, load_map(suite.path / spec.map, name, kind, spec)


def _norm(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split()).lower()


def test_shipped_maps_load_and_aligned_maps_are_bijections() -> None:
    seen = {}
    for name, kind, spec, tm in _shipped():
        seen[(name, kind)] = len(tm.pairs)
        keys = list(zip(tm.pairs["twin_task"], tm.pairs["twin_doc"], strict=True))
        assert len(set(keys)) == len(keys)  # one seed per twin item
        if spec.relation == "aligned":
            seeds = list(zip(tm.pairs["public_task"], tm.pairs["public_doc"], strict=True))
            assert len(set(seeds)) == len(seeds) == sum(tm.public_sizes.values())  # one to one and onto
    assert seen[("mmlu", "permuted")] == 14042 and seen[("gsm8k", "plus")] == 2100
    assert seen[("gsm8k", "plus_digit_expansion")] == 300 and seen[("gsm8k", "mgsm_en")] == 250
    assert seen[("mmlu", "redux")] >= 5300
    assert seen[("mmlu_redux", "permuted")] == 5330 and seen[("bbh", "permuted")] == 4074
    assert seen[("mgsm", "xling")] == 2500


def test_permuted_twins_pair_item_i_with_item_i() -> None:
    """The permuted twins keep the public order, so a run limited to its first items pairs with the public run's."""
    for name, kind, _spec, tm in _shipped():
        if kind == "permuted":
            assert (tm.pairs["twin_doc"] == tm.pairs["public_doc"]).all(), name
            assert set(zip(tm.pairs["twin_task"].str.replace("_permuted", "").str.replace("bbh_", "bbh_cot_fewshot_"),
                           tm.pairs["public_task"], strict=True)) == {(p, p) for p in tm.public_sizes}, name


def test_mgsm_languages_pair_with_the_english_problem_they_translate() -> None:
    """Read the TSVs again: twin item i of every other language pairs with English item i, which has the same
    answer; each English problem is the seed of its 10 translations."""
    spec = load_suite("mgsm").twins["xling"]
    tm = load_map(SUITES / "mgsm" / spec.map, "mgsm", "xling", spec)

    def answers(lang: str) -> list[str]:
        with (SUITES / f"mgsm/data/mgsm_{lang}.tsv").open(encoding="utf-8", newline="") as f:
            return [r[1] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]

    by_lang = {lang: answers(lang) for lang in ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")}
    en = by_lang["en"]
    assert set(tm.public_sizes) == {"mgsm_8shot_cot_en"} and len(tm.twin_sizes) == 10
    for task, doc, public_task, seed in tm.pairs.itertuples(index=False):
        assert public_task == "mgsm_8shot_cot_en" and doc == seed
        assert by_lang[task.rsplit("_", 1)[1]][doc] == en[seed]
    assert (tm.pairs.groupby("public_doc").size() == 10).all()


def test_mapped_items_are_the_same_question() -> None:
    """Read the data again, independently of the builder: each twin item's question is its seed's."""
    gsm = [json.loads(x)["question"] for x in (SUITES / "gsm8k/data/test.jsonl").read_text().split("\n") if x]
    plus = [json.loads(x) for x in (SUITES / "gsm_plus/data/gsmplus_testmini.jsonl").read_text().split("\n") if x]
    by_type: dict[str, list[str]] = {}
    for d in plus:
        by_type.setdefault("gsm_plus_" + d["perturbation_type"].replace(" ", "_").replace("-", "_"), []).append(
            d["seed_question"])
    spec = load_suite("gsm8k").twins["plus"]
    tm = load_map(SUITES / "gsm8k" / spec.map, "gsm8k", "plus", spec)
    for task, doc, _pt, seed in tm.pairs.itertuples(index=False):
        assert _norm(by_type[task][doc]) == _norm(gsm[seed])
    spec = load_suite("mmlu").twins["permuted"]
    tm = load_map(SUITES / "mmlu" / spec.map, "mmlu", "permuted", spec)
    rows = tm.pairs[tm.pairs["twin_task"] == "mmlu_permuted_anatomy"]
    with (SUITES / "mmlu/data/test/anatomy_test.csv").open(newline="") as f:
        pub = list(csv.reader(f))
    with (SUITES / "mmlu_permuted/data/test/anatomy_test.csv").open(newline="") as f:
        per = list(csv.reader(f))
    for _t, doc, _pt, seed in rows.itertuples(index=False):
        assert per[doc][0] == pub[seed][0] and sorted(per[doc][1:5]) == sorted(pub[seed][1:5])
        assert pub[seed][1 + "ABCD".index(pub[seed][5])] == per[doc][1 + "ABCD".index(per[doc][5])]  # same answer


def _write_map(path: Path, relation: str, seeds: list, size: int) -> Path:
    path.write_text(json.dumps({"relation": relation, "public_sizes": {"p": size},
                                "tasks": {"t": {"public_task": "p", "seeds": seeds}}}))
    return path


@pytest.mark.parametrize(("seeds", "words"), [
    ([0, 1, 1], "public item p/1 is the seed of both t/1 and t/2"),
    ([0, 1, 7], "twin item t/2 names public item p/7, which does not exist"),
    ([0, 1], "public item p/2 has no twin"),
])
def test_a_bad_map_is_one_line_naming_suite_and_id(tmp_path: Path, seeds: list, words: str) -> None:
    spec = TwinSpec(ref="x:twin", relation="aligned", map=str(tmp_path / "m.json"))
    with pytest.raises(HarnessError) as err:
        load_map(_write_map(tmp_path / "m.json", "aligned", seeds, 3), "mysuite", "perm", spec)
    assert err.value.exit_code == 2 and "twin map mysuite:perm" in err.value.line() and words in err.value.line()
    assert "\n" not in err.value.line()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("twinmaps") / "s.duckdb"
    build(path, models=0, docs=120, seed=1)
    return path, 120


def _gaps(path: Path, twins: dict) -> dict:
    g = gather(Store(path), twins=twins).gaps
    return {(r.model, r.kind): r for r in g.assign(model=g["model_id"]).itertuples(index=False)}


def test_pairing_only_through_the_map_and_shuffled_ids_do_not_pair(store, tmp_path: Path) -> None:
    path, docs = store
    mapped = mapped_twins(path, docs)
    before = _gaps(path, mapped)
    plain = _gaps(path, TWINS)  # the same doc ids on both sides, but no map: independent, never paired
    assert before and all(r.paired for k, r in before.items() if k[1] == "perturbed")
    assert not any(r.paired for r in plain.values())
    # shuffle the twin's doc ids: twin doc (7 i + 3) mod n is now public doc i
    shuffled = tmp_path / "shuffled.duckdb"
    shuffled.write_bytes(path.read_bytes())
    with Store(shuffled).db.write() as con:
        con.execute("UPDATE samples SET doc_id = (doc_id * 7 + 3) % ? WHERE task LIKE '%_gen_twin'", [docs])
        rebuild(con)  # samples changed by hand: their per-document index too
    moved = mapped_twins(shuffled, docs)
    for kinds in moved.values():
        if "perturbed" in kinds:
            body = json.loads(Path(kinds["perturbed"]["map"]).read_text())
            (entry,) = body["tasks"].values()
            entry["seeds"] = [[i for i in range(docs) if (7 * i + 3) % docs == j][0] for j in range(docs)]
            Path(kinds["perturbed"]["map"]).write_text(json.dumps(body))
    after = _gaps(shuffled, moved)
    for key, r in before.items():  # the right map finds the same pairs: the same paired gaps
        if key[1] == "perturbed":
            assert after[key].paired and after[key].gap == pytest.approx(r.gap) and after[key].se == pytest.approx(r.se)
    naive = _gaps(shuffled, mapped)  # the old map (identity) now pairs different items: a different gap
    assert any(abs(naive[k].se - r.se) > 1e-6 for k, r in before.items() if k[1] == "perturbed")
    unmapped = _gaps(shuffled, TWINS)  # and without a map, shuffled ids pair nothing
    assert not any(r.paired for r in unmapped.values())


def test_the_gaps_of_some_models_are_their_rows_of_every_models_gaps(store) -> None:
    """twin_gaps(..., models=) (the dashboard's Lineage page: the models on one model's chains, not the whole store)
    gives each of those models' rows as every model's gaps have them, bit for bit: a row is computed from its own
    two runs (paired through the map, or unpaired)."""
    import pandas as pd

    from harness.analysis.twin_gaps import twin_gaps

    path, docs = store
    data = gather(Store(path), twins=mapped_twins(path, docs))
    every, key = data.gaps, ["model_id", "suite", "kind"]
    ids = sorted(set(every["model_id"].tolist()))
    assert every["paired"].any() and (~every["paired"]).any() and len(ids) > 6
    for some in (ids[::3], ids[-1:], ["nobody"]):
        got = twin_gaps(Store(path), data, models=some).sort_values(key, ignore_index=True)
        want = every[every["model_id"].isin(some)].sort_values(key, ignore_index=True)
        assert len(got) == len(want)
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=bool(len(want)),
                                      check_index_type=False)


def test_a_map_that_does_not_know_a_scored_item_refuses_to_pair(store, tmp_path: Path) -> None:
    path, docs = store
    small = mapped_twins(tmp_path / "small", docs - 10)  # a map of 110 items for runs of 120: other data
    gaps = _gaps(path, small)
    assert gaps and not any(r.paired for r in gaps.values())  # unpaired, never paired wrongly


def test_cli_overfit_exits_2_on_a_bad_map(store, tmp_path: Path) -> None:
    path, docs = store
    folder = tmp_path / "suites" / "zoo_code"  # a user suite (HARNESS_SUITES) for the store's zoo_code runs
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        "name: zoo_code\nversion: '1'\nkind: lm-eval\ndefault_split: public\n"
        "splits: {public: [zoo_code_gen_public], twin: [zoo_code_gen_twin]}\n"
        "twins: {perturbed: {ref: 'zoo_math:twin', relation: aligned, map: twins/p.json}}\n")
    (folder / "twins").mkdir()
    _write_map(folder / "twins" / "p.json", "aligned", [0, 0], 2)
    env = {"HARNESS_SUITES": str(tmp_path / "suites"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "harness.cli.__main__", "--db", str(path), "overfit"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "twin map zoo_code:perturbed" in out.stderr
