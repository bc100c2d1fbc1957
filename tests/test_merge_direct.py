"""The in-memory merger's direct path (planned tasks run without mergekit's scheduler, harness.merge.direct) against
mergekit's own run_merge, per tensor, on the recipes an evolve search writes: per-layer-group parameters, several
candidates in a row through one merger (the gathered parent tensors reused), for every method it takes; DARE (random
masks) must stay on mergekit's Executor and still equal run_merge."""

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
    from harness.evolve.config import parse_config
    from harness.evolve.params import Space

    sources = [str(z["m1"])] if method == "slerp" else [str(z["m1"]), str(z["m2"])]
    cfg = parse_config({"base": str(z["m0"]), "sources": sources, "method": method, "parameters": SEARCHED[method],
                        "granularity": "layer", "fitness": [{"suite": "x"}], "budget": {"generations": 1}})
    space = Space.build(cfg, sources, str(z["m0"]), 2)
    rng = random.Random(method)
    return [space.recipe([rng.random() for _ in range(space.dim)]) for _ in range(n)]


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "ties", "slerp", "dare_linear"])
def test_direct_path_equals_mergekit_per_tensor(method: str, zoo, tmp_path: Path) -> None:  # noqa: F811
    from harness.merge import InMemoryMerger

    merger = InMemoryMerger(seed=5)
    recipes = search_recipes(zoo, method, 3)
    for i, recipe in enumerate(recipes):
        merged = merger.merge(recipe)
        assert_same(merged, mergekit_run_merge(recipe, tmp_path / f"peer{i}", seed=5))
    random_masks = method.startswith("dare")
    assert merger.direct.runs == (0 if random_masks else len(recipes))
    assert len(merger.direct.gathered) == (0 if random_masks else len(merged))  # gathered once, not per candidate
