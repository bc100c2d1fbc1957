"""The in-memory path for search loops: recipe -> state dict, no folder written, parents loaded once.

    merger = InMemoryMerger(store=Store())
    tensors = merger.merge("candidate.yaml")        # dict[str, Tensor], equal to the folder path's tensors
    merger.model_id("candidate.yaml")               # the id the folder path would give

The plan is mergekit's own (MergePlanner.plan_in_memory) run by mergekit's Executor, seeded as run_merge seeds
it, so random methods (DARE) draw the same masks in the same order; deterministic methods on the CPU skip the
Executor's per-merge schedule and run the planned tasks directly (harness.merge.direct), and are planned once per
recipe shape, each later candidate's parameter values bound into the planned tasks (harness.merge.rebind). Parent
tensors are kept in a TensorCache across calls and handed to the executor as already-computed values. Sub-recipes
(merges of merges) are made through the folder path once and then read like any other parent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.merge.direct import DirectRunner
from harness.merge.rebind import Rebinder, ShapeKey, shape_key, with_sentinels
from harness.merge.recipe import Recipe, load_recipe
from harness.merge.resolve import MergePlan, Resolver, plan_merge, to_merge_config

if TYPE_CHECKING:
    import torch

    from harness.store import Store


@dataclass
class TensorCache:
    """Parent tensors already read, keyed by mergekit's LoadTensor task (model, tensor, dtype, device)."""

    tensors: dict[Any, torch.Tensor] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, task: Any) -> torch.Tensor | None:
        if task in self.tensors:
            self.hits += 1
            return self.tensors[task]
        self.misses += 1
        value = task.execute()
        self.tensors[task] = value
        return value

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values() if t is not None)

    def clear(self) -> None:
        self.tensors.clear()


@dataclass
class InMemoryMerger:
    store: Store | None = None
    device: str = "cpu"
    seed: int | None = 0
    allow_pickle: bool = False
    check_finite: bool = True
    cache: TensorCache = field(default_factory=TensorCache)
    resolver: Resolver = field(init=False)
    direct: DirectRunner = field(init=False)
    rebinder: Rebinder = field(default_factory=Rebinder)

    def __post_init__(self) -> None:
        from harness.merge.methods import register_methods

        register_methods()
        if self.store is not None:
            self.store.init()
        self.resolver = Resolver(store=self.store, materialize=self._materialize)
        self.direct = DirectRunner(self.cache.get)
        self._checked: set[tuple[str, ...]] = set()
        self._arch: dict[str, tuple[Any, Any]] = {}  # mergekit architecture and output config per recipe shape
        self._configs: dict[tuple[Any, bool], Any] = {}  # each parent's config, read once (configs_read_once)
        self._versions: dict[str, str] = {}

    def _materialize(self, sub: Path) -> tuple[str, str]:
        from harness.merge.engine import merge_to_folder

        r = merge_to_folder(sub, seed=self.seed, device=self.device, allow_pickle=self.allow_pickle,
                            store=self.store, _stack=self.resolver.stack)
        return str(r.path), r.model_id

    def plan(self, recipe: str | Path | dict | Recipe, seed: int | None = None) -> MergePlan:
        rec = load_recipe(recipe)
        self.resolver.stack = (rec.path,) if rec.path else ()
        return plan_merge(rec, self.resolver, seed=self.seed if seed is None else seed, device=self.device,
                          version=self._version)

    def _version(self, package: str) -> str:
        """An installed package's version (an id ingredient), read once per merger: reading the package metadata
        took 0.4 ms of each search candidate's 1.06 ms plan (the evolve loop plans each candidate for its id)."""
        from importlib.metadata import version

        if package not in self._versions:
            self._versions[package] = version(package)
        return self._versions[package]

    def model_id(self, recipe: str | Path | dict | Recipe, seed: int | None = None) -> str:
        return self.plan(recipe, seed).model_id

    def merge(self, recipe: str | Path | dict | Recipe, seed: int | None = None) -> dict[str, torch.Tensor]:
        """The merged state dict (on the CPU), exactly as the folder path would write it. A recipe of a shape
        merged before (same recipe but for the floats of its parameters) is neither planned nor checked again."""
        rec = load_recipe(recipe)
        key = shape_key(rec) if self.device == "cpu" else None
        shape = self.rebinder.shapes.get(key.shape) if key is not None else None
        if key is not None and shape is not None:
            tensors = self._bound(shape, key)
        else:
            plan = self.plan(rec, seed)
            plan.validate()
            parents = tuple(sorted(p.model_id for p in plan.parents)) + (
                str(plan.config_data.get("tokenizer")), str(plan.config_data.get("tokenizer_source")))
            if parents not in self._checked:  # parent checks once per set of parents
                from harness.merge.checks import check_inputs

                check_inputs(plan, self.allow_pickle)
                self._checked.add(parents)
            tensors = self._execute(plan, None if key is None or key.shape in self.rebinder.unbindable else key)
        if self.check_finite:
            from harness.merge.checks import check_finite

            check_finite(tensors.items(), "in-memory merge")
        return tensors

    def _execute(self, plan: MergePlan, key: ShapeKey | None) -> dict[str, torch.Tensor]:
        """Plan with mergekit and run; with a key, first try to keep the plan for the recipe's shape."""
        from mergekit.io.tasks import LoaderCache

        from harness.merge.engine import merge_options, mergekit_error

        options = merge_options(plan.seed, self.device, self.allow_pickle)
        config = plan.config()
        try:
            LoaderCache().setup(options=options)
            planned = self._planned(config, plan.config_data, options)
            if key is not None and self.direct.supports([task for _, task in planned], str(options.device)):
                shape = self._learn(plan, key, planned, options)
                if shape is not None:
                    return shape.run(key.values)
            weights = {task: w for w, task in planned}
            values = self._run(list(weights), options.device, plan.seed)
        except HarnessError:
            raise
        except Exception as exc:
            raise mergekit_error(exc) from exc
        return {weights[task].name: cast(value, weights[task].force_dtype or config.out_dtype)
                for task, value in values if value is not None}

    def _planned(self, config: Any, config_data: dict[str, Any], options: Any) -> list[tuple[Any, Any]]:
        """mergekit's planned (weight, task) pairs. plan_in_memory() fails in mergekit 0.1.5 (ReturnTensor rejects
        its tensor_task), so the caller applies ReturnTensor's/SaveTensor's dtype cast itself."""
        from mergekit.architecture import get_architecture_info
        from mergekit.merge import _model_out_config
        from mergekit.plan import MergePlanner

        from harness.hashing import hash_json
        from harness.merge.engine import no_torch_dtype_notice

        arch_key = hash_json(strip_parameters(config_data))
        if arch_key not in self._arch:
            arch = get_architecture_info(config, options)
            with no_torch_dtype_notice():
                self._arch[arch_key] = (arch, _model_out_config(config, arch, trust_remote_code=False))
        arch, out_cfg = self._arch[arch_key]
        with configs_read_once(self._configs):
            planner = MergePlanner(config, arch, options=options, out_model_config=out_cfg)
            planner._plan()
        return list(planner._tensors)

    def _learn(self, plan: MergePlan, key: ShapeKey, planned: list[tuple[Any, Any]], options: Any) -> Any:
        """The recipe's shape planned with a sentinel in each slot (harness.merge.rebind), or None: then the
        shape is planned per candidate (a sentinel plan that fails says only that)."""
        try:
            data, slots = with_sentinels(plan.config_data)
            sentinel = self._planned(to_merge_config(data), data, options) if slots == len(key.values) else None
        except Exception:  # noqa: BLE001
            sentinel = None
        if sentinel is None:
            self.rebinder.unbindable.add(key.shape)
            return None
        return self.rebinder.learn(key, plan.method, planned, sentinel, self.direct.inputs, plan.config().out_dtype)

    def _bound(self, shape: Any, key: ShapeKey) -> dict[str, torch.Tensor]:
        from harness.merge.engine import mergekit_error

        try:
            return shape.run(key.values)
        except HarnessError:
            raise
        except Exception as exc:
            raise mergekit_error(exc) from exc

    def _run(self, targets: list[Any], device: Any, seed: int | None) -> list[tuple[Any, Any]]:
        """(task, value) of each planned target: directly (harness.merge.direct: methods that draw no random number,
        so unseeded) where the order of execution cannot matter, else by mergekit's Executor, seeded as run_merge
        seeds it, with the parents' tensors handed over as already computed."""
        from mergekit.graph import Executor, TaskUniverse
        from mergekit.io.tasks import LoadTensor

        from harness.merge.rng import seeded

        direct = self.direct.run_planned(targets, str(device))
        if direct is not None:
            return list(zip(targets, direct, strict=True))
        universe = TaskUniverse(targets)
        handles = [universe.add_task(t) for t in targets]
        cached = {universe.get_handle(t): self.cache.get(t) for t in universe.tasks if isinstance(t, LoadTensor)}
        executor = Executor(handles, math_device=device, storage_device="cpu", cached_values=cached)
        with seeded(seed):
            return list(executor.run(quiet=True))


@contextmanager
def configs_read_once(known: dict[tuple[Any, bool], Any]) -> Iterator[None]:
    """While mergekit plans, each model's config is read once per merger: its planner asks transformers to parse
    every parent's config.json several times per merge (66 parses, ~60% of a zoo candidate's merge time), and
    planning only reads them. The parents of a search never change (a changed folder is another model id)."""
    from mergekit.common import ModelReference

    real = ModelReference.config

    def config(ref: Any, trust_remote_code: bool = False) -> Any:
        if (ref, trust_remote_code) not in known:
            known[ref, trust_remote_code] = real(ref, trust_remote_code)
        return known[ref, trust_remote_code]

    ModelReference.config = config  # type: ignore[method-assign]
    try:
        yield
    finally:
        ModelReference.config = real  # type: ignore[method-assign]


def cast(tensor: torch.Tensor, dtype: str | None) -> torch.Tensor:
    from mergekit.common import dtype_from_name

    return tensor.to(dtype=dtype_from_name(dtype)) if dtype else tensor


def strip_parameters(node: Any) -> Any:
    """The recipe without its parameters: what the architecture and output config depend on."""
    if isinstance(node, dict):
        return {k: strip_parameters(v) for k, v in node.items() if k != "parameters"}
    if isinstance(node, list):
        return [strip_parameters(v) for v in node]
    return node
