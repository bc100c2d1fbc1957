"""The in-memory merger's direct path (planned tasks run without mergekit's scheduler, harness.merge.direct) against
mergekit's own run_merge, per tensor, on the recipes an evolve search writes: per-layer-group parameters, several
candidates in a row through one merger (the gathered parent tensors reused), for every method it takes; DARE (random
masks) must stay on mergekit's Executor and still equal run_merge. A recipe shape is planned by mergekit once
(harness.merge.rebind): later candidates of the shape get their parameter values put into the planned tasks, and
must still equal run_merge tensor for tensor, on the tiny random Llamas and on the zoo."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.test_merge import assert_same, mergekit_run_merge, zoo  # noqa: F401  (zoo: the session fixture)

SEARCHED = {"linear": {"weight": {"low": 0.0, "high": 1.2}},
            "task_arithmetic": {"weight": {"low": -0.5, "high": 1.2}},
            "ties": {"weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.1, "high": 1.0}},
            "slerp": {"t": {"low": 0.0, "high": 1.0}},
            "dare_linear": {"weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.2, "high": 1.0}}}


def search_recipes(z: dict[str, Path], method: str, n: int) -> list[dict]:
    """n random points of an evolve space (layer granularity: one value per layer and one for the rest)."""
    return space_points(z["m0"], [z["m1"], z["m2"]], method, "layer", [None] * n)


def space_points(base: Path, sources: list[Path], method: str, granularity: str, xs: list) -> list[dict]:
    """The recipes of an evolve space at points xs (None: a random point; a number: every coordinate that value)."""
    from harness.evolve.config import parse_config
    from harness.evolve.params import Space, num_layers

    names = [str(s) for s in (sources[:1] if method == "slerp" else sources)]
    cfg = parse_config({"base": str(base), "sources": names, "method": method, "parameters": SEARCHED[method],
                        "granularity": granularity, "layer_groups": 2, "fitness": [{"suite": "x"}],
                        "budget": {"generations": 1}})
    space = Space.build(cfg, names, str(base), num_layers(base))
    rng = random.Random(method)
    return [space.recipe([rng.random() if x is None else x for _ in range(space.dim)]) for x in xs]


def count_plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times mergekit's planner plans a merge (its MergePlanner._plan, called through)."""
    from mergekit.plan import MergePlanner

    calls, real = [0], MergePlanner._plan

    def counted(self):  # noqa: ANN001, ANN202
        calls[0] += 1
        return real(self)

    monkeypatch.setattr(MergePlanner, "_plan", counted)
    return calls


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "ties", "slerp", "dare_linear"])
def test_direct_path_equals_mergekit_per_tensor(method: str, zoo, tmp_path: Path) -> None:  # noqa: F811
    from harness.merge import InMemoryMerger

    merger = InMemoryMerger(seed=5)
    recipes = search_recipes(zoo, method, 3)
    for i, recipe in enumerate(recipes):
        merged = merger.merge(recipe)
        assert_same(merged, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=5))
    random_masks = method.startswith("dare")
    assert merger.direct.runs == 0  # DARE on mergekit's Executor; the others planned once, then re-bound
    assert len(merger.rebinder.shapes) == (0 if random_masks else 1)
    assert len(merger.direct.gathered) == (0 if random_masks else len(merged))  # gathered once, not per candidate


DIRECT = ["linear", "task_arithmetic", "ties", "slerp"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method", DIRECT)
def test_one_plan_per_shape_equals_mergekit(method: str, dtype: str, zoo, tmp_path: Path,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Three candidates of one shape: the first with every parameter equal (which slot a planned value came from
    cannot be read off its value), then two random ones. mergekit plans twice (the first candidate, and once with a
    distinct value in every slot), not once per candidate; every tensor of every candidate is run_merge's."""
    from harness.merge import InMemoryMerger

    plans = count_plans(monkeypatch)
    merger = InMemoryMerger(seed=5)
    recipes = [{**r, "dtype": dtype} for r in space_points(zoo["m0"], [zoo["m1"], zoo["m2"]], method, "layer",
                                                             [0.5, None, None])]
    merged = [merger.merge(recipe) for recipe in recipes]
    assert plans[0] == 2
    for i, (ours, recipe) in enumerate(zip(merged, recipes, strict=True)):
        assert_same(ours, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=5))


def test_a_gradient_is_planned_per_candidate(zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A gradient (a list of numbers) is interpolated by the planner, so its values are not put in slots: each
    candidate is planned by mergekit, and another shape in between (a linear merge) does not disturb either."""
    from harness.merge import InMemoryMerger

    plans = count_plans(monkeypatch)
    merger = InMemoryMerger(seed=5)
    m0, m1, m2 = (str(zoo[k]) for k in ("m0", "m1", "m2"))
    graded = [{"merge_method": "task_arithmetic", "base_model": m0, "models": [
        {"model": m1, "parameters": {"weight": [a, 1 - a, a / 2]}}, {"model": m2, "parameters": {"weight": 0.4}}]}
        for a in (0.25, 0.75)]
    linear = {"merge_method": "linear", "models": [{"model": m1, "parameters": {"weight": 0.3}},
                                                   {"model": m2, "parameters": {"weight": 0.9}}]}
    recipes = [graded[0], linear, graded[1], {**linear, "dtype": "float16"}]
    merged = [merger.merge(recipe) for recipe in recipes]
    assert plans[0] == 2 + 2 * 2  # each gradient candidate once; each linear shape twice (its slots' plan)
    for i, (ours, recipe) in enumerate(zip(merged, recipes, strict=True)):
        assert_same(ours, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=5))


@pytest.mark.parametrize("method", DIRECT)
def test_zoo_candidates_equal_mergekit(method: str, zoo_family: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's search (layer_groups) on the zoo's base and two experts: four candidates, two plans."""
    from harness.merge import InMemoryMerger

    plans = count_plans(monkeypatch)
    merger = InMemoryMerger(seed=0)
    recipes = space_points(zoo_family / "zoo-base", [zoo_family / "zoo-math", zoo_family / "zoo-lang"], method,
                           "layer_groups", [0.5, None, None, None])
    merged = [merger.merge(recipe) for recipe in recipes]
    assert plans[0] == 2
    for i, (ours, recipe) in enumerate(zip(merged, recipes, strict=True)):
        assert_same(ours, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=0))


def test_a_float_given_to_a_flag_is_planned_per_candidate(zoo, tmp_path: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """normalize: 1.0 then 0.0 (floats that the flag's validator reads as True and False): a sentinel is no flag, so
    the shape's sentinel plan fails and the shape is planned per candidate, both candidates still run_merge's."""
    from harness.merge import InMemoryMerger

    plans = count_plans(monkeypatch)
    merger = InMemoryMerger(seed=5)
    m0, m1, m2 = (str(zoo[k]) for k in ("m0", "m1", "m2"))
    recipes = [{"merge_method": "task_arithmetic", "base_model": m0, "parameters": {"normalize": flag}, "models": [
        {"model": m1, "parameters": {"weight": 0.6}}, {"model": m2, "parameters": {"weight": 0.7}}]}
        for flag in (1.0, 0.0)]
    merged = [merger.merge(recipe) for recipe in recipes]
    assert plans[0] == 3  # the first candidate, its sentinel plan (refused), the second candidate
    assert merger.rebinder.shapes == {}
    for i, (ours, recipe) in enumerate(zip(merged, recipes, strict=True)):
        assert_same(ours, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=5))
    assert not all(torch_equal(a, b) for a, b in zip(merged[0].values(), merged[1].values(), strict=True))


def torch_equal(a, b) -> bool:  # noqa: ANN001
    import torch

    return torch.equal(a, b)


def test_a_search_reads_package_versions_once(zoo, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A search plans every candidate for its id (harness.evolve.loop); the installed mergekit's version (an id
    ingredient, 0.4 ms to read from the package metadata) is read once per merger, and the ids are those of a
    plan made from scratch."""
    import importlib.metadata

    from harness.merge import InMemoryMerger
    from harness.merge.recipe import load_recipe
    from harness.merge.resolve import Resolver, plan_merge

    fresh = [plan_merge(load_recipe(r), Resolver(), seed=5).model_id for r in search_recipes(zoo, "dare_linear", 3)]
    reads, real = [], importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: reads.append(name) or real(name))
    merger = InMemoryMerger(seed=5)
    assert [merger.model_id(r) for r in search_recipes(zoo, "dare_linear", 3)] == fresh
    assert sorted(reads) == ["mergekit", "torch"]  # dare draws random numbers: torch's release is in its id


def test_a_binding_that_does_not_give_back_the_plan_is_refused(zoo) -> None:  # noqa: F811
    """The check that keeps a shape: its tasks, re-bound with the first candidate's values, must be mergekit's plan
    of that candidate. Given another candidate's plan in place of the sentinel plan (its values are constants, not
    slots), the re-bound tasks hold the other values and the shape is refused; given the sentinel plan, kept."""
    from harness.merge import InMemoryMerger
    from harness.merge.engine import merge_options
    from harness.merge.rebind import Rebinder, shape_key, with_sentinels
    from harness.merge.recipe import load_recipe
    from harness.merge.resolve import to_merge_config

    merger = InMemoryMerger(seed=5)
    first, other = search_recipes(zoo, "task_arithmetic", 2)
    merger.merge(first)
    options = merge_options(5, "cpu", False)

    def planned(data: dict) -> list:
        return merger._planned(to_merge_config(data), data, options)

    plan = merger.plan(first)
    key = shape_key(load_recipe(first))
    real, wrong = planned(plan.config_data), planned(merger.plan(other).config_data)
    refused = Rebinder()
    assert refused.learn(key, "task_arithmetic", real, wrong, merger.direct.inputs, "float32") is None
    assert refused.unbindable == {key.shape}
    kept = Rebinder()
    sentinel = planned(with_sentinels(plan.config_data)[0])
    assert kept.learn(key, "task_arithmetic", real, sentinel, merger.direct.inputs, "float32") is not None
    assert list(kept.shapes) == [key.shape]
