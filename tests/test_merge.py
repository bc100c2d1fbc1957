"""harness merge against mergekit itself: same tensors, in-memory == folder, caching, cards, lineage, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SMALL = {"hidden": 64, "heads": 1, "intermediate": 128, "layers": 2}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny real Llamas sharing a tokenizer, and a wider one; built once per session (the merge test
    modules import this fixture)."""
    from tests.factories import make_tiny_llama

    root = tmp_path_factory.mktemp("zoo")
    models = {f"m{i}": make_tiny_llama(root / f"m{i}", seed=i, **SMALL) for i in range(3)}
    models["wide"] = make_tiny_llama(root / "wide", seed=3, **{**SMALL, "intermediate": 192})
    return models


def write_recipe(folder: Path, name: str, recipe: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def recipes(z: dict[str, Path]) -> dict[str, dict]:
    m0, m1, m2 = (str(z[k]) for k in ("m0", "m1", "m2"))
    return {
        "linear": {"merge_method": "linear", "models": [
            {"model": m0, "parameters": {"weight": 0.3}}, {"model": m1, "parameters": {"weight": 0.7}}]},
        "slerp": {"merge_method": "slerp", "base_model": m0, "models": [{"model": m0}, {"model": m1}],
                  "parameters": {"t": [0.0, 0.5, 1.0]}},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": m0, "models": [
            {"model": m1, "parameters": {"weight": 0.6}}, {"model": m2, "parameters": {"weight": 0.4}}]},
        "ties": {"merge_method": "ties", "base_model": m0, "models": [
            {"model": m1, "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m2, "parameters": {"weight": 0.5, "density": 0.7}}]},
        "passthrough": {"merge_method": "passthrough", "slices": [
            {"sources": [{"model": m0, "layer_range": [0, 2]}]}, {"sources": [{"model": m1, "layer_range": [1, 2]}]}]},
        "dare_ties": {"merge_method": "dare_ties", "base_model": m0, "models": [
            {"model": m1, "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m2, "parameters": {"weight": 0.5, "density": 0.7}}]},
    }


def load_folder(folder: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def assert_same(a: dict, b: dict) -> None:
    import torch

    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def mergekit_run_merge(recipe: dict, out: Path, seed: int) -> dict:
    """mergekit's own library entry point, called the way mergekit-yaml calls it, with its models in recipe order:
    mergekit's own order is a set's (another per process), which picks the donor of config.json and the tokenizer
    when there is no base_model; harness fixes it to the recipe's (harness.merge.ordered), so the peer does too."""
    from mergekit.merge import MergeOptions, run_merge

    from harness.merge.ordered import OrderedMergeConfiguration

    config = OrderedMergeConfiguration.model_validate(recipe)
    run_merge(config, str(out), options=MergeOptions(random_seed=seed, quiet=True))
    return load_folder(out)


@pytest.mark.parametrize("method", ["linear", "slerp", "task_arithmetic", "ties", "dare_ties", "passthrough"])
def test_folder_equals_mergekit_and_memory(method, zoo, store, results, tmp_path):
    from harness.merge import InMemoryMerger, merge_to_folder

    recipe = recipes(zoo)[method]
    path = write_recipe(tmp_path, method, recipe)
    result = merge_to_folder(path, seed=7, store=store)
    ours = load_folder(result.path)
    assert_same(ours, mergekit_run_merge(recipe, tmp_path / "peer", seed=7))
    merger = InMemoryMerger(store=store, seed=7)
    assert_same(merger.merge(path), ours)
    read = merger.cache.misses
    assert read > 0
    assert_same(merger.merge(path), ours)  # again: the parents' tensors are not read again
    assert merger.cache.misses == read
    assert merger.model_id(path) == result.model_id


@pytest.mark.slow
def test_dare_seed_matters_and_equals_mergekit_yaml(zoo, store, results, tmp_path):
    """Against the mergekit-yaml command itself, with a random method: same seed, same masks."""
    from harness.merge import InMemoryMerger, merge_to_folder

    recipe = recipes(zoo)["dare_ties"]
    path = write_recipe(tmp_path, "dare", recipe)
    exe = Path(sys.executable).parent / "mergekit-yaml"
    subprocess.run([str(exe), str(path), str(tmp_path / "peer"), "--random-seed", "11", "--quiet"], check=True,
                   capture_output=True)
    a = merge_to_folder(path, seed=11, store=store)
    assert_same(load_folder(a.path), load_folder(tmp_path / "peer"))
    b = merge_to_folder(path, seed=12, store=store, name="dare-s12")  # another model: a name of its own
    assert a.model_id != b.model_id
    import torch

    ta, tb = load_folder(a.path), load_folder(b.path)
    assert any(not torch.equal(ta[k], tb[k]) for k in ta)
    # a search loop: different candidates interleaved, each equal to its folder
    merger = InMemoryMerger(store=store)
    assert_same(merger.merge(path, seed=12), tb)
    assert_same(merger.merge(path, seed=11), ta)


def test_same_recipe_is_cached_and_card_is_written(zoo, store, results, tmp_path):
    from harness.merge import merge_to_folder

    path = write_recipe(tmp_path, "lin", recipes(zoo)["linear"])
    first = merge_to_folder(path, store=store)
    assert not first.cached and first.path == results / "merges" / first.model_id
    again = merge_to_folder(path, store=store)
    assert again.cached and again.path == first.path and again.model_id == first.model_id
    # the same recipe written differently (key order, other paths to the same files) has the same id
    moved = tmp_path / "copy_of_m1"
    shutil.copytree(zoo["m1"], moved)
    other = recipes(zoo)["linear"]
    other["models"][1]["model"] = str(moved)
    other = {"models": other["models"], "merge_method": "linear"}
    assert merge_to_folder(other, store=store).model_id == first.model_id
    files = {p.name for p in first.path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= files
    card = (first.path / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert "merge" in front["tags"] and len(front["base_model"]) == 2
    assert "merge_method: linear" in card
    rec = store.get_model(first.model_id)
    assert rec.kind == "merge" and rec.recipe_id == first.recipe_id and rec.n_params > 0
    assert store.recipe(first.recipe_id)[0] == "linear"
    edges = store.parents(first.model_id)
    assert sorted(e.weight for e in edges) == [0.3, 0.7] and {e.role for e in edges} == {"source"}
    # the merged folder loads as a model
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(first.path)
    # --out elsewhere: a copy of the stored model, still cached
    elsewhere = merge_to_folder(path, tmp_path / "mine", store=store)
    assert elsewhere.cached and (tmp_path / "mine" / "model.safetensors").is_file()
    assert not [p for p in (results / "merges").iterdir() if p.name.startswith(".")]
    # --name on a stored merge: the model takes the name asked for, the old name is dropped
    assert store.get_model(first.model_id).name == "lin"
    named = merge_to_folder(path, store=store, name="lin-v2")
    assert named.cached and store.get_model("lin-v2").model_id == first.model_id
    assert store.get_model(first.model_id).name == "lin-v2" and store.find_model("lin") is None


def test_three_level_merge_of_merges_lineage(zoo, store, results, tmp_path):
    from harness.merge import merge_to_folder

    m0, m1, m2 = (str(zoo[k]) for k in ("m0", "m1", "m2"))
    from harness.hashing import hash_model_dir
    from harness.store import ModelRecord

    store.add_model(ModelRecord(model_id=hash_model_dir(m0), name="zoo-m0", path=m0, kind="zoo"))
    write_recipe(tmp_path, "a", {"merge_method": "linear", "models": [
        {"model": "zoo-m0", "parameters": {"weight": 1.0}}, {"model": m1, "parameters": {"weight": 1.0}}]})
    write_recipe(tmp_path, "b", {"merge_method": "slerp", "base_model": m1, "models": [
        {"model": m1}, {"model": m2}], "parameters": {"t": 0.5}})
    write_recipe(tmp_path, "ab", {"merge_method": "ties", "base_model": "zoo-m0", "models": [
        {"model": "a.yaml", "parameters": {"weight": 0.5, "density": 0.5}},
        {"model": "b.yaml", "parameters": {"weight": 0.5, "density": 0.5}}]})
    top = write_recipe(tmp_path, "top", {"merge_method": "linear", "models": [
        {"model": "ab.yaml", "parameters": {"weight": 0.8}}, {"model": m2, "parameters": {"weight": 0.2}}]})
    res = merge_to_folder(top, store=store)
    ids = {r.name: r.model_id for r in store.list_models("merge")}
    assert set(ids) == {"a", "b", "ab", "top"} and ids["top"] == res.model_id
    src = {k: hash_model_dir(zoo[k]) for k in ("m0", "m1", "m2")}
    assert store.depth(res.model_id) == 3
    anc = store.ancestors(res.model_id)
    assert anc[ids["ab"]] == 1 and anc[ids["a"]] == 2 and anc[ids["b"]] == 2
    assert anc[src["m2"]] == 1 and anc[src["m0"]] == 2 and anc[src["m1"]] == 3
    assert sorted(store.roots(res.model_id)) == sorted(src.values())
    assert set(store.descendants(src["m0"])) == {ids["a"], ids["ab"], ids["top"]}
    roles = {(e.parent_id, e.role) for e in store.parents(ids["ab"])}
    assert roles == {(src["m0"], "base"), (ids["a"], "source"), (ids["b"], "source")}
    tree = store.lineage_tree(res.model_id)
    ab = next(p for p in tree["parents"] if p["name"] == "ab")
    assert ab["weight"] == 0.8 and ab["params"]["method"] == "linear"
    assert {p["name"] for p in ab["parents"]} == {"zoo-m0", "a", "b"}
    # merging the top again is a cache hit all the way down
    assert merge_to_folder(top, store=store).cached


def test_cli_json_and_selected_on(zoo, store, results, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    path = write_recipe(tmp_path, "ta", recipes(zoo)["task_arithmetic"])
    out = CliRunner().invoke(app, ["merge", str(path), "--json", "--selected-on", "gsm8k:public", "--seed", "3"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert Path(data["path"]).is_dir() and len(data["parents"]) == 3 and not data["cached"]
    sel = store.exposure(data["model_id"])
    assert [(s.suite, s.split, s.process) for s in sel] == [("gsm8k", "public", "user")]


def test_import_is_light():
    code = "import harness.merge, harness.cli, sys; print('torch' in sys.modules or 'mergekit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.stdout.strip() == "False", out.stderr


def test_docs_name_every_method_and_option():
    from harness.merge.methods import method_names

    docs = (Path(__file__).resolve().parent.parent / "docs" / "merge.md").read_text()
    missing = [m for m in method_names() if f"`{m}`" not in docs]
    assert not missing, f"docs/merge.md does not mention {missing}"
    for opt in ("--out", "--device", "--seed", "--allow-pickle", "--selected-on", "--json", "harness fisher"):
        assert opt in docs, opt


def test_folder_without_store_row_is_registered_not_remade(zoo, results, tmp_path):
    from harness.merge import merge_to_folder
    from harness.store import Store

    recipe = recipes(zoo)["linear"]
    first = merge_to_folder(recipe, store=Store(tmp_path / "one.duckdb"))
    fresh = Store(tmp_path / "two.duckdb")
    again = merge_to_folder(recipe, store=fresh)
    assert again.cached and again.path == first.path
    assert fresh.get_model(first.model_id).kind == "merge" and len(fresh.parents(first.model_id)) == 2
