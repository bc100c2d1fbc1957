"""Names are names and ids are identity (issue 18): one name per model in a store, a taken name is refused with
the fix, re-pointing is an explicit command, tables are keyed by model id. Real merges of tiny models."""

from __future__ import annotations

from pathlib import Path

from harness.store.records import RunRecord, Score
from tests import test_merge as shared
from tests.factories import run_cli

zoo = shared.zoo


class Out:
    def __init__(self, args: list[str]) -> None:
        self.exit_code, self.stdout, self.stderr = run_cli(*args)
        self.output = self.stdout + self.stderr


def cli(args: list[str]) -> Out:
    return Out(args)


def ties(z: dict[str, Path], density: float) -> dict:
    m0, m1, m2 = (str(z[k]) for k in ("m0", "m1", "m2"))
    return {"merge_method": "ties", "base_model": m0, "models": [
        {"model": m1, "parameters": {"weight": 0.5, "density": density}},
        {"model": m2, "parameters": {"weight": 0.5, "density": 0.7}}]}


def scored(store, model_id: str, metric: str, value: float) -> None:
    """A complete run of `model_id` with one score, written through the store's own API."""
    run = RunRecord(run_id=f"r-{model_id[:8]}-{metric}", model_id=model_id, suite="s", backend="hf",
                    harness_version="test", split="public")
    store.start_run(run)
    row = Score("s_task", metric, value, 0.01, 10, value - 0.1, value + 0.1)  # a task row, and the run's aggregate
    store.finish_run(run.run_id, [row, Score("_aggregate", metric, value, 0.01, 10, value - 0.1, value + 0.1)], [])


def test_same_recipe_stem_is_refused_then_named_and_both_shown(zoo, store, results, tmp_path) -> None:
    a = shared.write_recipe(tmp_path / "exp1", "ties", ties(zoo, 0.5))
    b = shared.write_recipe(tmp_path / "exp2", "ties", ties(zoo, 0.9))
    first = cli(["merge", str(a)])
    assert first.exit_code == 0, first.output
    merged_before = {m.model_id for m in store.list_models("merge")}
    second = cli(["merge", str(b)])
    assert second.exit_code == 2, second.output
    assert "name 'ties' is taken" in second.output and "--name" in second.output
    assert {m.model_id for m in store.list_models("merge")} == merged_before  # nothing recorded
    assert len(list((results / "merges").iterdir())) == 1  # nothing written
    named = cli(["merge", str(b), "--name", "ties-exp2"])
    assert named.exit_code == 0, named.output
    ids = {m.name: m.model_id for m in store.list_models("merge")}
    assert set(ids) == {"ties", "ties-exp2"}
    scored(store, ids["ties"], "acc", 0.61)
    scored(store, ids["ties-exp2"], "exact_match", 0.23)
    board = cli(["leaderboard"])
    lines = [ln for ln in board.stdout.splitlines() if "0.610" in ln or "0.230" in ln]
    assert len(lines) == 2 and not any("0.610" in ln and "0.230" in ln for ln in lines), board.stdout


def test_a_recipe_name_never_repoints_an_existing_name(zoo, store, results, tmp_path) -> None:
    src = cli(["merge", str(shared.write_recipe(tmp_path, "zoo-math", ties(zoo, 0.5)))])
    assert src.exit_code == 0
    owner = store.find_model("zoo-math").model_id
    hijack = shared.write_recipe(tmp_path, "other", {**ties(zoo, 0.8), "name": "zoo-math"})
    out = cli(["merge", str(hijack)])
    assert out.exit_code == 2 and "name 'zoo-math' is taken" in out.output
    assert store.find_model("zoo-math").model_id == owner
    ok = cli(["merge", str(hijack), "--name", "zoo-math-2"])
    assert ok.exit_code == 0, ok.output
    new = store.find_model("zoo-math-2").model_id
    moved = cli(["models", "rename", "zoo-math-2", "zoo-math"])  # taken: needs --force
    assert moved.exit_code == 2 and "--force" in moved.output
    moved = cli(["models", "rename", "zoo-math-2", "zoo-math", "--force"])
    assert moved.exit_code == 0, moved.output
    assert store.find_model("zoo-math").model_id == new  # re-pointed, explicitly
    assert store.get_model(owner).name not in (None, "zoo-math")  # the old holder keeps a name of its own


def test_merge_parents_get_their_folder_name(zoo, store, results, tmp_path) -> None:
    out = cli(["merge", str(shared.write_recipe(tmp_path, "t", ties(zoo, 0.5)))])
    assert out.exit_code == 0
    sources = store.list_models("source")
    assert sorted(m.name for m in sources) == ["m0", "m1", "m2"]


def test_leaderboard_is_keyed_by_model_id_even_with_duplicate_names(zoo, store, results, tmp_path) -> None:
    """A store written before names were unique: two models share a display name; the table keeps them apart."""
    for name, d in (("x", 0.5), ("y", 0.9)):
        assert cli(["merge", str(shared.write_recipe(tmp_path, name, ties(zoo, d)))]).exit_code == 0
    ids = {m.name: m.model_id for m in store.list_models("merge")}
    with store.db.write() as con:
        con.execute("UPDATE models SET name = 'ties'")
    scored(store, ids["x"], "acc", 0.61)
    scored(store, ids["y"], "exact_match", 0.23)
    board = cli(["leaderboard"])
    lines = [ln for ln in board.stdout.splitlines() if "0.610" in ln or "0.230" in ln]
    assert len(lines) == 2 and not any("0.610" in ln and "0.230" in ln for ln in lines), board.stdout
    assert ids["x"][:8] in board.stdout and ids["y"][:8] in board.stdout
