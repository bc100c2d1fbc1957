"""Evolve: config validation, the parameter space (vector -> recipe -> merged tensors), import weight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.evolve.config import load_config, parse_config
from tests.test_evolve_support import make_config, make_models, make_suite

GOOD = {
    "base": "b", "sources": ["m1", "m2"], "method": "ties",
    "parameters": {"weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.2, "high": 1.0, "init": 0.5}},
    "fitness": [{"suite": "zoo_math_L", "weight": 1.0}], "budget": {"generations": 3},
}


def bad(**over: object) -> str:
    with pytest.raises(HarnessError) as err:
        parse_config({**GOOD, **over}, "cfg.yaml")
    return err.value.line()


def test_good_config_parses_and_is_frozen() -> None:
    cfg = parse_config(GOOD)
    assert cfg.param_names() == ("weight", "density")
    assert cfg.parameters["density"].start == 0.5 and cfg.parameters["weight"].start == 0.5
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        cfg.population = 3  # type: ignore[misc]


@pytest.mark.parametrize(("over", "field", "words"), [
    ({"method": "tiess"}, "method", "Input should be"),
    ({"parameters": {"weight": {"low": 1.0, "high": 0.5}}}, "parameters.weight", "low (1.0) must be below high"),
    ({"parameters": {"t": {"low": 0, "high": 1}}}, "config", "parameters.t is not searched by ties"),
    ({"budget": {}}, "budget", "set generations, evaluations or minutes"),
    ({"population": 1}, "population", "greater than or equal to 2"),
    ({"fitness": []}, "fitness", "at least 1"),
    ({"heldout_split": "search"}, "config", "must differ"),
    ({"base": None}, "config", "needs `base`"),
    ({"backend": "tgi"}, "backend", "Input should be"),
    ({"colour": "red"}, "colour", "Extra inputs"),
    ({"budget": {"generations": 0}}, "budget.generations", "greater than or equal to 1"),
    ({"finalists": {"split": "search"}}, "config", "finalists.split must differ from search_split"),
    ({"finalists": {"count": 1, "split": "heldout"}}, "finalists.count", "greater than or equal to 2"),
])
def test_config_errors_name_the_field(over: dict, field: str, words: str) -> None:
    line = bad(**over)
    assert f"field {field}:" in line and words in line and "\n" not in line



@pytest.mark.parametrize(("low", "high"), [(0.0, 1.5), (-0.5, 1.0)])
def test_a_density_outside_0_1_is_refused(low: float, high: float) -> None:
    """mergekit treats a density >= 1 as 1 and <= 0 as 0 (nothing kept): the part of the range outside [0, 1] is flat
    for CMA-ES, silently."""
    import torch
    from mergekit.sparsify import magnitude

    t = torch.arange(1.0, 9.0)
    assert torch.equal(magnitude(t, 1.5), magnitude(t, 1.0)) and torch.equal(magnitude(t, -0.5), magnitude(t, 0.0))
    line = bad(parameters={"weight": {"low": 0.0, "high": 1.0}, "density": {"low": low, "high": high}})
    assert "field config:" in line and "density" in line and "[0.0, 1.0]" in line and "\n" not in line
    assert parse_config({**GOOD, "parameters": {"density": {"low": 0.0, "high": 1.0}}})  # the edges are fine

def test_slerp_needs_one_source_and_t() -> None:
    assert "exactly one source" in bad(method="slerp", parameters={"t": {"low": 0, "high": 1}})
    cfg = parse_config({**GOOD, "method": "slerp", "sources": ["m1"], "parameters": {"t": {"low": 0, "high": 1}}})
    assert cfg.param_names() == ("t",)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no evolve config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("method: [unclosed")
    with pytest.raises(HarnessError, match="not valid YAML"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("- a list")
    with pytest.raises(HarnessError, match="must be a YAML mapping"):
        load_config(tmp_path / "y.yaml")


def test_identity_leaves_out_budget_and_speed_settings() -> None:
    a = parse_config(GOOD)
    b = parse_config({**GOOD, "budget": {"generations": 30}, "workers": 4, "batch_size": 8})
    c = parse_config({**GOOD, "seed": 1})
    assert a.identity() == b.identity() != c.identity()


def test_layer_groups_and_slots() -> None:
    from harness.evolve.params import Space, layer_groups

    assert layer_groups(4, "layer_groups", 2) == [[0, 1], [2, 3]]
    assert layer_groups(5, "layer_groups", 2) == [[0, 1], [2, 3, 4]]
    assert layer_groups(3, "layer", 0) == [[0], [1], [2]]
    assert layer_groups(3, "global", 2) == []
    with pytest.raises(HarnessError, match="more than the model's 2 layers"):
        layer_groups(2, "layer_groups", 3)
    cfg = parse_config({**GOOD, "granularity": "layer_groups"})
    space = Space.build(cfg, ["/m1", "/m2"], "/b", 4)
    assert space.group_names == ["layers0-1", "layers2-3", "io"]
    assert space.dim == 2 * 2 * 3
    assert space.start()[:3] == [0.5, 0.5, 0.5] and space.start()[3] == pytest.approx(0.375)
    recipe = space.recipe([0.0] * 3 + [1.0] * 3 + [0.5] * 6)
    w = recipe["models"][0]["parameters"]["weight"]
    assert w[0] == {"filter": "layers.0.", "value": 0.0} and w[-1] == {"value": 0.0}
    assert recipe["models"][0]["parameters"]["density"][2] == {"filter": "layers.2.", "value": 1.0}
    assert recipe["base_model"] == "/b" and recipe["merge_method"] == "ties"


def test_per_group_weights_reach_the_merged_tensors(tmp_path: Path) -> None:
    """task arithmetic with a weight per layer group: every merged tensor is base + sum_i w_i,group (src_i - base)."""
    import torch
    from safetensors.torch import load_file

    from harness.evolve.params import Space
    from harness.merge import InMemoryMerger

    base, sources = make_models(tmp_path, n_sources=2, layers=2)
    cfg = parse_config(make_config(tmp_path, base, sources, granularity="layer"))
    space = Space.build(cfg, [str(s) for s in sources], str(base), 2)
    x = [0.1, 0.7, 0.4, 0.9, 0.2, 0.6]  # src0: layer0, layer1, io; src1: layer0, layer1, io
    merged = InMemoryMerger(seed=cfg.seed).merge(space.recipe(x))
    b = load_file(str(base / "model.safetensors"))
    s = [load_file(str(p / "model.safetensors")) for p in sources]
    for name, t in merged.items():
        g = 0 if "layers.0." in name else 1 if "layers.1." in name else 2
        want = b[name] + x[g] * (s[0][name] - b[name]) + x[3 + g] * (s[1][name] - b[name])
        assert torch.allclose(t, want, atol=1e-6), name


def test_imports_stay_light() -> None:
    code = ("import sys, harness, harness.cli, harness.cli.evolve_cmds, harness.evolve, harness.evolve.config;"
            "print([m for m in ('torch', 'cmaes', 'vllm', 'lm_eval', 'mergekit') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_example_configs_validate() -> None:
    root = Path(__file__).resolve().parent.parent / "examples"
    files = sorted(root.glob("evolve_*.yaml"))
    assert {f.name for f in files} >= {"evolve_zoo.yaml", "evolve_oversearch.yaml"}
    for f in files:
        parse_config(yaml.safe_load(f.read_text()), str(f))


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({**GOOD, "population": 1}))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "evolve", str(cfg)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "field population" in out.stderr and "docs/evolve.md" in out.stderr


@pytest.mark.parametrize("code, says", [
    ("from harness.evolve.parallel import RayPool; RayPool(None, 2, None)",
     "workers > 1 needs Ray, which is not installed: pip install 'harness[ray]', or set workers: 1"),
    ("from harness.train.ray_training import train_all, TrainTask; train_all([None, None], workers=2)",
     "train.workers > 1 needs Ray, which is not installed: pip install 'harness[ray]', or set train.workers: 1"),
])
def test_workers_without_ray_is_a_clear_error(code: str, says: str) -> None:
    """Where Ray is not installed (here it is, so the child process hides it), asking for workers is one line."""
    hide = "import sys; sys.modules['ray'] = None\n"  # `import ray` raises ImportError, as on a machine without it
    out = subprocess.run([sys.executable, "-c", hide + "from harness.errors import HarnessError\ntry:\n    "
                          + code + "\nexcept HarnessError as e:\n    print(e.line())"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == says


@pytest.mark.slow
@pytest.mark.parametrize("by_size", [True, False])
def test_fitness_is_the_suite_score(by_size: bool, tmp_path: Path, store) -> None:
    """A search split of two tasks of 9 and 31 documents (weighted and plain means differ): the live engine's
    fitness is the suite score the leaderboard shows for `harness eval` of the same model (SUITE_SCORES_SQL, the
    suite's aggregate rule), not the plain mean over tasks it was before."""
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from harness.evolve.config import FitnessSuite
    from harness.evolve.fitness import SplitTasks
    from harness.store import frames as views
    from harness.suites import load_suite, score_rules
    from tests.factories import make_tiny_llama
    from tests.test_evolve_support import make_suite

    folder = make_suite(tmp_path / "suites", sizes={"a": 9, "b": 31})
    (folder / "suite.yaml").write_text(
        "name: tiny_sum\nversion: '1'\nkind: lm-eval\ndefault_split: search\n"
        "splits: {search: [tiny_sum_mc_a, tiny_sum_mc_b]}\n"
        f"aggregate: {{metric: acc, weight_by_size: {str(by_size).lower()}}}\n")
    model = make_tiny_llama(tmp_path / "model", seed=3)
    tasks = SplitTasks.build((FitnessSuite(suite="tiny_sum"),), "search", tmp_path / "suites")
    score = tasks.score(HFLM(pretrained=str(model), device="cpu", batch_size=8, dtype="float32"))
    a, b = score.per_task["tiny_sum_mc_a"], score.per_task["tiny_sum_mc_b"]
    assert a != b  # so the weighting matters to the number
    assert score.fitness == pytest.approx((9 * a + 31 * b) / 40 if by_size else (a + b) / 2, abs=1e-12)

    suite = load_suite("tiny_sum", tmp_path / "suites")
    evaluate_model(str(model), suite, EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32",
                                                                                 batch_size=8)), store=store)
    (row,) = views.suite_scores(store, rules=score_rules(tmp_path / "suites")).itertuples()
    assert score.fitness == pytest.approx(row.value, abs=1e-12) and row.tasks == 2



@pytest.mark.slow
def test_two_entries_of_one_suite_keep_their_weights(tmp_path: Path) -> None:
    """fitness: [{suite, tasks: [a], weight: 3}, {suite, tasks: [b], weight: 1}] is 3:1 over the two entries (each its
    tasks' score); it came out as the suite's document-weighted mean under the last entry's weight (zoo_math_L's mc
    and gen at 3:1: 0.1000 instead of 0.1375, audit fitness_check.py). Entries whose tasks overlap are refused."""
    from lm_eval.models.huggingface import HFLM

    from harness.evolve.fitness import SplitTasks
    from tests.factories import make_tiny_llama
    from tests.test_evolve_support import make_suite

    folder = make_suite(tmp_path / "suites", sizes={"a": 9, "b": 31})
    (folder / "suite.yaml").write_text("name: tiny_sum\nversion: '1'\nkind: lm-eval\ndefault_split: search\n"
                                       "splits: {search: [tiny_sum_mc_a, tiny_sum_mc_b]}\n")
    entries = [{"suite": "tiny_sum", "tasks": ["tiny_sum_mc_a"], "weight": 3.0},
               {"suite": "tiny_sum", "tasks": ["tiny_sum_mc_b"], "weight": 1.0}]
    cfg = parse_config({**GOOD, "fitness": entries})
    model = make_tiny_llama(tmp_path / "model", seed=3)
    tasks = SplitTasks.build(cfg.fitness, "search", tmp_path / "suites")
    score = tasks.score(HFLM(pretrained=str(model), device="cpu", batch_size=8, dtype="float32"))
    a, b = score.per_task["tiny_sum_mc_a"], score.per_task["tiny_sum_mc_b"]
    assert a != b  # so the weighting matters to the number
    assert score.fitness == pytest.approx((3 * a + b) / 4, abs=1e-12)
    coef = tasks.coefficients({"tiny_sum_mc_a": 9.0, "tiny_sum_mc_b": 31.0})  # the stderr's weights agree
    assert coef == pytest.approx({"tiny_sum_mc_a": 0.75, "tiny_sum_mc_b": 0.25})
    for overlap in ([{"suite": "tiny_sum"}, {"suite": "tiny_sum", "tasks": ["tiny_sum_mc_b"]}],
                    [{"suite": "tiny_sum", "tasks": ["a", "b"]}, {"suite": "tiny_sum", "tasks": ["b"]}]):
        line = bad(fitness=overlap)
        assert "tiny_sum" in line and "more than once" in line and "\n" not in line


def test_a_heldout_split_that_asks_the_search_splits_questions_is_refused() -> None:
    """The held-out split is the check the search never saw (docs/evolve.md): mgsm's direct and cot splits pose the
    same 250 problems (11 languages each) and were accepted (only the split names were compared); the zoo's search
    and heldout splits (disjoint) still are."""
    from harness.evolve.fitness import check_heldout_apart

    mgsm = parse_config({**GOOD, "fitness": [{"suite": "mgsm"}], "search_split": "direct", "heldout_split": "cot"})
    with pytest.raises(HarnessError) as err:
        check_heldout_apart(mgsm, None)
    assert "(2750 of its 2750 documents)" in err.value.line() and "\n" not in err.value.line()
    check_heldout_apart(parse_config({**GOOD, "search_split": "search"}), None)  # zoo_math_L: disjoint


@pytest.mark.slow
def test_a_heldout_file_holding_search_documents_is_refused_before_any_merge(tmp_path: Path, store) -> None:
    """A held-out file holding 3 of the search split's documents: run_evolve stops in one line before it merges,
    evaluates or records anything (before, it ran the whole search)."""
    import shutil

    from harness.evolve.loop import Search
    from harness.workflows.evolve import run_evolve

    base, sources = make_models(tmp_path)
    folder = make_suite(tmp_path / "suites", sizes={"search": 12, "heldout": 12})
    data = folder / "data"
    search = (data / "search.jsonl").read_text().splitlines()
    (data / "heldout.jsonl").write_text("\n".join(data.joinpath("heldout.jsonl").read_text().splitlines()[3:]
                                                  + search[4:7]) + "\n")
    cfg = parse_config(make_config(tmp_path, base, sources))
    with pytest.raises(HarnessError, match=r"asks questions the search split 'search' asks \(3 of its 12 documents"):
        run_evolve(cfg, store=store, base_dir=tmp_path)
    with store.db.read() as con:
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 0  # nothing merged
        assert con.execute("SELECT count(*) FROM evolve_runs").fetchone()[0] == 0
    shutil.rmtree(folder)
    make_suite(tmp_path / "suites", sizes={"search": 12, "heldout": 12})  # other documents: accepted
    assert Search(cfg, tmp_path, store).evolve_id

@pytest.mark.slow
def test_requests_built_once_score_like_a_fresh_build(zoo_family: Path, capfd: pytest.CaptureFixture) -> None:
    """The search's fixed work done once per split (each task's requests and documents, the tokenizer's
    encodings, compiled templates) changes no score: candidates swapped into one engine and scored with the reused
    task objects get exactly what a fresh build of the tasks gives them, multiple choice and generation alike, in
    any order. lm-eval's per-candidate progress bars stay off."""
    from harness.evolve.config import FitnessSuite
    from harness.evolve.engines import open_engine
    from harness.evolve.fitness import SplitTasks, _tasks_of
    from harness.merge import InMemoryMerger

    fitness = (FitnessSuite(suite="zoo_math_L"),)
    engine = open_engine("hf", zoo_family / "zoo-base", "float32", 16, None)
    merger = InMemoryMerger(seed=0)
    recipes = [{"merge_method": "task_arithmetic", "base_model": str(zoo_family / "zoo-base"), "dtype": "float32",
                "models": [{"model": str(zoo_family / name), "parameters": {"weight": w}}
                           for name, w in (("zoo-math", wm), ("zoo-lang", wl))]}
               for wm, wl in ((1.0, 0.5), (0.3, 1.0), (1.0, 0.5))]
    reused = SplitTasks.build(fitness, "search", None, limit=12)
    for recipe in recipes:
        engine.swap(merger.merge(recipe))
        again = reused.score(engine.lm)
        fresh = SplitTasks.build(fitness, "search", None, limit=12).score(engine.lm)
        assert again.per_task == fresh.per_task and again.fitness == fresh.fitness
        assert set(again.per_task) == {"zoo_math_L_mc_search", "zoo_math_L_gen_search"}
    assert reused.score(engine.lm) == fresh  # the last candidate again: its answers were not carried over
    assert [len(t.build_all_requests.built) for t in _tasks_of(reused.task_dict["tasks"])] == [1, 1]  # built once
    engine.close()
    err = capfd.readouterr().err
    assert "Tokenizing inputs" not in err and "Running generate_until requests" not in err


def test_a_model_without_layers_n_tensors_is_searched_globally_or_refused(tmp_path: Path) -> None:
    """Per-layer values reach tensors through mergekit filters 'layers.N.' (a substring of the name): GPT-2's and
    Falcon's decoder layers are 'transformer.h.N.', which no such filter matches, so a per-layer search there would
    set every tensor to the io group's value whatever the layer values: refused in one line (it built a space that
    searched nothing per layer). granularity: global searches them; GPT-2's config says n_layer."""
    from harness.evolve.loop import build_space
    from tests.factories import make_tiny_causal

    for arch in ("falcon", "gpt2"):
        folders = [make_tiny_causal(tmp_path / f"{arch}{s}", arch, seed=s) for s in range(3)]
        base, sources = folders[0], folders[1:]
        for granularity in ("layer", "layer_groups"):
            cfg = parse_config(make_config(tmp_path, base, sources, granularity=granularity, layer_groups=2))
            with pytest.raises(HarnessError, match="layers.N."):
                build_space(cfg, [str(s) for s in sources], str(base), str(base))
        cfg = parse_config(make_config(tmp_path, base, sources, granularity="global"))
        assert build_space(cfg, [str(s) for s in sources], str(base), str(base)).group_names == ["all"]
    qwen = [make_tiny_causal(tmp_path / f"qwen2{s}", "qwen2", seed=s) for s in range(3)]
    cfg = parse_config(make_config(tmp_path, qwen[0], qwen[1:], granularity="layer"))
    assert build_space(cfg, [str(s) for s in qwen[1:]], str(qwen[0]), str(qwen[0])).group_names == \
        ["layer0", "layer1", "io"]


def _plant_generation(store, rows: list[tuple[float | None, float | None]], evolve_id: str = "ev1") -> None:
    """One generation of candidates written straight into the store: (fitness, held-out) per row."""
    import json

    from harness.store import evolve as records

    records.start_run(store, evolve_id, {"fitness_key": "k"})
    with store.db.write() as con:
        for idx, (fit, held) in enumerate(rows):
            con.execute("INSERT INTO evolve_candidates VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [evolve_id, 1, idx, f"m{idx}", json.dumps({}), fit, held])


@pytest.mark.parametrize(("rows", "expected"), [
    ([(0.30, 0.20), (0.50, 0.25), (0.40, 0.35), (0.10, 0.05)], 0.25),  # the fittest's, not the last row's (0.05)
    ([(0.30, 0.20), (0.50, None), (0.40, 0.35)], None),  # the fittest was not checked: no held-out number
    ([(0.50, 0.20), (0.50, 0.30)], 0.20),  # a fitness tie goes to the earliest, as records.best
])
def test_history_heldout_is_the_fittest_candidates(store, rows, expected) -> None:
    from harness.store import evolve as records

    _plant_generation(store, rows)
    assert records.history(store, "ev1")[0]["heldout"] == expected


@pytest.mark.parametrize("dist", ["lm_eval", "transformers", "torch"])
def test_fitness_key_names_the_engines_that_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str) -> None:
    """A fitness cached under another lm-eval, transformers or torch (an upgrade) is another fitness: the key that
    decides whether a stored fitness is reused changes with each engine's version, as the request cache's does."""
    import importlib.metadata

    from harness.evolve.loop import Search
    from harness.store import Store
    from tests.test_evolve_support import make_suite

    make_suite(tmp_path / "suites")
    base, sources = make_models(tmp_path / "models")
    store = Store(tmp_path / "h.duckdb")
    store.init()
    cfg = parse_config(make_config(tmp_path, base, sources))
    now = Search(cfg, tmp_path, store).fitness_key
    assert Search(cfg, tmp_path, store).fitness_key == now
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.0.1" if d == dist else real(d))
    assert Search(cfg, tmp_path, store).fitness_key != now


def test_a_run_is_resumed_only_under_the_fitness_it_started_with() -> None:
    """check_same_fitness (before a resume scores anything; tests/test_evolve_loop.py resumes a real run after an
    upgrade): the same key resumes; another one is refused in one line naming the engine versions that changed, or
    else the data/score rules, or, for a run stored before its engines were (no `engines`), the key as a whole."""
    from harness.evolve.fitness import check_same_fitness

    was = "lm_eval 0.4.13; vllm 0.10.1"
    check_same_fitness("ev1", {"fitness_key": "a", "engines": was}, "a", was)
    for stored, now, expected in [
        ({"fitness_key": "a", "engines": was}, "lm_eval 0.4.14; vllm 0.10.1", "(lm_eval 0.4.13 -> 0.4.14)"),
        ({"fitness_key": "a", "engines": was}, was, "its fitness suites' data or aggregate rules changed"),
        ({"fitness_key": "a"}, was, "its fitness (data, score rules or engines) changed"),
    ]:
        with pytest.raises(HarnessError) as err:
            check_same_fitness("ev1", stored, "b", now)
        assert expected in err.value.line() and "vllm" not in err.value.line() and "\n" not in err.value.line()


def test_the_pick_among_finalists_is_one_of_the_count_fittest() -> None:
    """A run extended with a larger budget keeps the finalist scores of its first pass: m2 (public 0.9) was a
    finalist then and is no longer among the 2 fittest, so the pick is the better of m0 and m1 on public."""
    from harness.store.evolve import Candidate, pick

    def cand(idx: int, fit: float, public: float | None) -> Candidate:
        params = {} if public is None else {"finalist": {"split": "public", "fitness": public}}
        return Candidate(1, idx, f"m{idx}", params, fit, None)

    cands = [cand(0, 0.8, 0.3), cand(1, 0.7, 0.5), cand(2, 0.6, 0.9), cand(3, 0.5, None)]
    assert pick(cands, "public", 2).model_id == "m1"
    assert pick(cands, "public", 3).model_id == "m2"
    assert pick(cands).model_id == "m0"
