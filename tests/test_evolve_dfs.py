"""DFS (layer path) search: the path as a passthrough recipe, the scale fold, the live engine changing depth, bad
input, and a short real search on tiny Llamas (harness.evolve.dfs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.evolve.config import parse_config
from tests.test_evolve_support import make_config, make_models, make_suite

PROMPT = [[1, 5, 6, 7, 8, 9, 10, 11]]


def dfs_config(tmp: Path, sources: list[Path], **dfs: object) -> dict:
    cfg = make_config(tmp, sources[0], sources, method="dfs", parameters={}, dfs={"repeats": 1, **dfs})
    cfg.pop("base")
    cfg.pop("granularity")
    cfg.pop("layer_groups")
    return cfg


def space(tmp: Path, sources: list[Path], **dfs: object):
    from harness.evolve.dfs import DfsSpace

    return DfsSpace.build(parse_config(dfs_config(tmp, sources, **dfs)), [str(s) for s in sources])


def logits(model, ids=PROMPT):
    import torch

    with torch.no_grad():
        return model(torch.tensor(ids)).logits


def point(sp, included: dict[int, float]) -> list[float]:
    """A unit-cube point including the slots given (slot -> scale), the others excluded."""
    d = sp.cfg.dfs
    n = len(sp.path_slots)
    x = [0.9 if t in included else 0.1 for t in range(n)]
    if d.scales:
        x += [(included.get(t, 1.0) - d.scale.low) / (d.scale.high - d.scale.low) for t in range(n)]
    return x


def test_one_sources_path_gives_its_logits_exactly(tmp_path: Path) -> None:
    """The starting path (source 0's layers in order, scales 1) merged in memory and swapped into an engine built
    on the other source reproduces source 0's logits bit for bit; so does a deeper path on the engine then."""
    from transformers import AutoModelForCausalLM

    from harness.evolve.engines import open_engine
    from harness.merge import InMemoryMerger, merge_to_folder

    _, sources = make_models(tmp_path, n_sources=2, layers=2)
    sp = space(tmp_path, sources, repeats=2)
    assert len(sp.path_slots) == 8 and sp.dim == 16  # T = M x r = (2 + 2) x 2, an indicator and a scale each
    recipe = sp.recipe(sp.start())
    assert [s["sources"][0]["layer_range"] for s in recipe["slices"]] == [[0, 1], [1, 2]]
    merger = InMemoryMerger(seed=0)
    engine = open_engine("hf", sources[1], "float32", 8, True)
    want = logits(AutoModelForCausalLM.from_pretrained(sources[0]).eval())
    deep = sp.recipe(point(sp, {0: 1.0, 3: 1.0, 5: 1.0}))  # src0 L0, src1 L1, src0 L1 (repeat 2): 3 layers
    engine.swap(merger.merge(deep))
    assert len(engine.model.get_decoder().layers) == 3
    folder = merge_to_folder(deep, seed=0).path
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 3
    assert (logits(engine.model) == logits(AutoModelForCausalLM.from_pretrained(folder).eval())).all()
    engine.swap(merger.merge(recipe))
    assert (logits(engine.model) == want).all()


@pytest.mark.parametrize(("eps", "tol"), [(0.0, 2e-5), (1e-6, 2e-4)])
def test_a_slot_scale_multiplies_that_layers_input(tmp_path: Path, eps: float, tol: float) -> None:
    """Scale s on slot k = the residual stream entering layer k multiplied by s (a forward pre-hook on the
    unscaled path), folded as o_proj and down_proj x 1/c_k: equal up to float rounding when rms_norm_eps = 0 and
    up to eps's effect otherwise; the scale changes the logits far more than that."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.merge import merge_to_folder

    _, sources = make_models(tmp_path, n_sources=1, layers=3)
    cfg_file = sources[0] / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "rms_norm_eps": eps}))
    sp = space(tmp_path, sources, scale={"low": 0.25, "high": 4.0, "init": 1.0})
    s1, s2 = 2.5, 0.4
    scaled = merge_to_folder(sp.recipe(point(sp, {0: 1.0, 1: s1, 2: s2})), seed=0).path
    plain = AutoModelForCausalLM.from_pretrained(sources[0]).eval()
    base = logits(plain)
    scales = {1: s1, 2: s2}
    for k, s in scales.items():
        plain.model.layers[k].register_forward_pre_hook(lambda _m, args, s=s: (args[0] * s, *args[1:]))
    want = logits(plain)
    got_model = AutoModelForCausalLM.from_pretrained(scaled).eval()
    got = logits(got_model)
    gap = float((got - want).abs().max())
    assert gap < tol
    assert float((want - base).abs().max()) > 100 * tol
    src = plain.model.layers[2].self_attn.o_proj.weight
    assert torch.allclose(got_model.model.layers[2].self_attn.o_proj.weight, src * round(1 / (s1 * s2), 6))
    assert torch.equal(got_model.model.layers[0].mlp.down_proj.weight, plain.model.layers[0].mlp.down_proj.weight)



def test_sources_whose_configs_differ_beyond_the_layer_count_are_refused(tmp_path: Path) -> None:
    """Two sources alike but for rope_theta and rms_norm_eps: the live engine scored every candidate with the first
    source's config while the saved folder took mergekit's output config from a set's first item (PYTHONHASHSEED
    decided; audit cfg_mismatch.py), so a candidate's score could come from another model than its folder. Refused
    in one line naming the keys; a difference in storage fields only (dtype, transformers_version: a PS merge next
    to its sources in PS+DFS) and in the layer count is not."""
    from harness.evolve.dfs import check_sources

    _, sources = make_models(tmp_path, n_sources=3, layers=2)
    f = sources[1] / "config.json"
    cfg = json.loads(f.read_text())
    rope = {"rope_theta": 5e5, "rope_type": "default"}
    f.write_text(json.dumps({**cfg, "rms_norm_eps": 0.1, "rope_parameters": rope}))
    with pytest.raises(HarnessError) as err:
        check_sources([str(s) for s in sources[:2]], scaled=True)
    line = err.value.line()
    assert "src0 and src1 differ in rms_norm_eps, rope_parameters" in line and "\n" not in line
    g = sources[2] / "config.json"
    g.write_text(json.dumps({**json.loads(g.read_text()), "dtype": "bfloat16", "transformers_version": "0"}))
    assert check_sources([str(sources[0]), str(sources[2])], scaled=True) == [2, 2]

def test_sources_of_different_width_or_tokenizer_are_refused_naming_both(tmp_path: Path, tiny_llama) -> None:
    from tests.factories import run_cli

    a = tiny_llama("wide", hidden=128)
    b = tiny_llama("narrow", hidden=64, heads=1)
    c = tiny_llama("words", words=["x", "y", "z"])
    make_suite(tmp_path / "suites")
    for other, words in ((b, "hidden_size: wide has 128, narrow has 64"), (c, "different tokenizers: wide and words")):
        f = tmp_path / f"{other.name}.yaml"
        f.write_text(yaml.safe_dump(dfs_config(tmp_path, [a, other])))
        code, out, err = run_cli("evolve", str(f), "--db", str(tmp_path / "h.duckdb"))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_path_longer_than_memory_is_refused_before_the_search(tmp_path: Path, store) -> None:
    from harness.workflows.evolve import run_evolve

    _, sources = make_models(tmp_path, n_sources=2, layers=2)
    make_suite(tmp_path / "suites")
    cfg = parse_config(dfs_config(tmp_path, sources, repeats=3, memory_gb=0.001))
    with pytest.raises(HarnessError) as err:
        run_evolve(cfg, store=store, base_dir=tmp_path)
    assert "longest dfs path (12 layers) needs an estimated" in err.value.problem and "0.001 GB" in err.value.problem
    with store.db.read() as con:
        assert con.execute("SELECT count(*) FROM evolve_runs").fetchone()[0] == 0


def test_config_rules() -> None:
    base = {"sources": ["a", "b"], "method": "dfs", "fitness": [{"suite": "s"}], "budget": {"generations": 1}}
    with pytest.raises(HarnessError, match="needs a `dfs:` block"):
        parse_config(base)
    with pytest.raises(HarnessError, match="backend hf"):
        parse_config({**base, "dfs": {}, "backend": "vllm"})
    cfg = parse_config({**base, "dfs": {"repeats": 3}})
    assert cfg.dfs is not None and cfg.dfs.repeats == 3 and not cfg.ps_dfs
    ps = {**base, "method": "linear", "parameters": {"weight": {"low": 0, "high": 1}}}
    assert "dfs" not in parse_config(ps).identity()  # PS run ids are unchanged by the dfs field
    assert parse_config({**ps, "dfs": {}}).ps_dfs



@pytest.mark.parametrize("low", [0.0, -1.0])
def test_a_scale_at_or_below_zero_is_refused_when_the_config_is_read(low: float) -> None:
    """A scale of 0 (CMA-ES clips to the lower bound) divided by zero in path_recipe; a negative one flips the sign
    of the stream, which the fold cannot carry (RMSNorm(c v) = sign(c) RMSNorm(v)): logits 2.8-3.6 off the scaled
    path."""
    from harness.evolve.dfs import Slot, path_recipe

    with pytest.raises(ZeroDivisionError):  # what the bound let through
        path_recipe([(Slot("a", 0, 0), 0.0)], "float32")
    base = {"sources": ["a", "b"], "method": "dfs", "fitness": [{"suite": "s"}], "budget": {"generations": 1}}
    with pytest.raises(HarnessError) as err:
        parse_config({**base, "dfs": {"scale": {"low": low, "high": 2.0, "init": 1.0}}}, "cfg.yaml")
    line = err.value.line()
    assert "field dfs.scale:" in line and "above 0" in line and "\n" not in line
    assert parse_config({**base, "dfs": {"scale": {"low": 0.01, "high": 2.0, "init": 1.0}}}).dfs is not None

@pytest.mark.slow
def test_dfs_search_records_paths_and_an_empty_path_is_never_loaded(tmp_path: Path, store) -> None:
    """A real DFS search (hf, tiny Llamas, the tiny suite): candidates are passthrough merges with lineage to the
    sources; a path selecting no layer has fitness NULL and no model; the best is materialised and selected."""
    from harness.store import evolve as records
    from harness.workflows.evolve import run_evolve

    _, sources = make_models(tmp_path, n_sources=1, layers=2)
    make_suite(tmp_path / "suites")
    cfg = parse_config({**dfs_config(tmp_path, sources, scales=False, margin=0.5), "sigma": 1.0, "population": 6,
                        "check_every": 0})
    res = run_evolve(cfg, store=store, base_dir=tmp_path)
    cands = records.candidates(store, res.evolve_id)
    empty = [c for c in cands if c.model_id == "empty-path"]
    assert empty and all(c.fitness is None and c.params["values"]["layers"] == 0 for c in empty)
    assert all(store.find_model(c.model_id) for c in cands if c.model_id != "empty-path")
    assert res.status == "complete" and res.path and Path(res.path).is_dir()
    best = store.find_model(res.best_model_id)
    assert best is not None and best.kind == "merge"
    run = records.get_run(store, res.evolve_id)
    assert run is not None
    assert {e.parent_id for e in store.parents(res.best_model_id)} == set(run.config["parents"].values())


@pytest.mark.slow
def test_ps_dfs_from_one_config_searches_a_path_over_the_ps_merge_and_its_sources(tmp_path: Path, store) -> None:
    """PS+DFS: the PS run (the same id as the config without `dfs:`), then a DFS run whose sources are the PS best
    merge's folder and the sources, starting from the PS merge's own layers."""
    from harness.store import evolve as records
    from harness.workflows.evolve import run_evolve

    base, sources = make_models(tmp_path, n_sources=2, layers=2)
    make_suite(tmp_path / "suites")
    ps_only = make_config(tmp_path, base, sources, granularity="global", population=3, check_every=0,
                          budget={"generations": 1})
    ps_only["starts"] = [{str(sources[0]): {"weight": 1.0}}]  # hand starts belong to the PS stage only
    cfg = parse_config({**ps_only, "dfs": {"repeats": 1}})
    res = run_evolve(cfg, store=store, base_dir=tmp_path)
    ps_id, dfs_id = res.stages
    assert res.evolve_id == dfs_id and res.status == "complete"
    from harness.evolve.loop import Search

    assert Search(parse_config(ps_only), tmp_path, store).evolve_id == ps_id
    ps_run, dfs_run = records.get_run(store, ps_id), records.get_run(store, dfs_id)
    assert ps_run is not None and dfs_run is not None
    ps_path = store.find_model(ps_run.best_model_id).path
    assert dfs_run.config["sources"] == [ps_path, *(str(s.resolve()) for s in sources)]
    from harness.evolve.config import EvolveConfig
    from harness.evolve.dfs import DfsSpace

    sp = DfsSpace.build(EvolveConfig.model_validate(dfs_run.config["config"]), dfs_run.config["sources"])
    start = sp.recipe(sp.start())
    assert [(s["sources"][0]["model"], s["sources"][0]["layer_range"]) for s in start["slices"]] == [
        (ps_path, [0, 1]), (ps_path, [1, 2])]
    assert {s.process_id for s in store.selections([res.best_model_id])} == {dfs_id}
    # the store now holds a PS and a PS+DFS pick; a hand recipe scored on both splits makes them comparable
    from harness.analysis.search_methods import stored_comparison
    from harness.evaluate.options import eval_options
    from harness.evaluate.runner import evaluate_model
    from harness.evolve.fitness import load_suite
    from harness.merge import merge_to_folder
    from tests.factories import run_cli

    hand = merge_to_folder({"merge_method": "linear", "dtype": "float32", "models": [
        {"model": str(s), "parameters": {"weight": 0.5}} for s in sources]}, seed=0, store=store).model_id
    suite = load_suite("tiny_sum", tmp_path / "suites")
    for split in ("search", "heldout"):
        evaluate_model(hand, suite, eval_options(backend="hf", batch_size=16), store, split=split)
    table = stored_comparison(store, "tiny_sum").set_index("method")
    assert list(table.index) == ["hand", "PS", "PS+DFS"] and table.loc["hand", "model_id"] == hand
    assert table.loc["PS+DFS", "model_id"] == res.best_model_id and table.loc["PS+DFS", "n"] == 40
    code, out, err = run_cli("leaderboard", "--methods", "--suite", "tiny_sum", "--db", str(store.path))
    assert code == 0 and "PS+DFS" in out and "vs best hand" in out, err
    code, _, err = run_cli("leaderboard", "--methods", "--db", str(store.path))
    assert code == 2 and "--suite" in err


def test_layer_paths_of_models_with_layers_of_different_kinds_are_refused(tmp_path: Path) -> None:
    """Gemma2's layers alternate sliding and full attention: a layer moved along a path would silently take the kind
    of its new position (the engine once gave every layer the first one's), and mergekit-yaml cannot write such a
    model at another depth either; GPT-2 (transformer.h.N.) is counted and sized like Llama."""
    from harness.evolve.dfs import check_sources, layer_bytes
    from harness.merge.checks import safetensors_shapes
    from tests.factories import make_tiny_causal

    gemma = [make_tiny_causal(tmp_path / f"g{i}", "gemma2", seed=i, layers=4) for i in range(2)]
    with pytest.raises(HarnessError) as err:
        check_sources([str(g) for g in gemma], scaled=False)
    assert "layers are of different kinds (full_attention, sliding_attention)" in err.value.problem
    gpt2 = [make_tiny_causal(tmp_path / f"p{i}", "gpt2", seed=i, layers=3) for i in range(2)]
    assert check_sources([str(g) for g in gpt2], scaled=False) == [3, 3]
    per_layer, other = layer_bytes(str(gpt2[0]), "float32")
    shapes = safetensors_shapes(gpt2[0])
    assert per_layer == sum(4 * math.prod(s) for k, s in shapes.items() if ".h.0." in k) > 0 and other > 0
