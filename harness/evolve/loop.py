"""The evolution loop: CMA-ES (the `cmaes` library) over merge parameters, every candidate merged in memory,
swapped into one live engine, scored by lm-eval on the search split, recorded in the store; the optimizer state is
saved after each generation, so `resume=True` continues a killed run to the same result.

    result = run_evolve("examples/evolve_zoo.yaml", on_generation=print)

At the end the best candidate is materialised (merge_to_folder), evaluated through the evaluation runner on the
held-out split, the search split and every report suite, and a selection row records that it was chosen on the
fitness suites' search split by this run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evolve import optimizer_state
from harness.evolve.config import EvolveConfig, resolve_ref
from harness.evolve.fitness import check_same_fitness
from harness.evolve.params import Space, check_layer_names, num_layers
from harness.hashing import hash_json
from harness.store import evolve as records

if TYPE_CHECKING:
    from harness.evolve.dfs import DfsSpace
    from harness.evolve.parallel import Pool, WorkerSpec
    from harness.merge import InMemoryMerger
    from harness.store import Store

PENALTY = 1.0  # CMA-ES minimises -fitness; a failed merge (NaN weights) counts as -fitness = +1 (worse than any)


@dataclass(frozen=True)
class GenerationReport:
    generation: int
    best: float | None
    mean: float | None
    sigma: float
    evaluated: int  # candidates scored in this generation
    reused: int  # candidates whose fitness came from the cache (same model id seen before)
    failed: int
    seconds: float
    per_minute: float
    best_so_far: float | None
    best_model_id: str | None
    heldout: float | None = None  # held-out check of the best so far, every check_every generations
    stderr: float | None = None  # standard error of this generation's best fitness (its noise)


@dataclass
class EvolveResult:
    evolve_id: str
    status: str
    generations: int
    evaluations: int
    best_model_id: str | None
    best_fitness: float | None
    best_params: dict[str, Any]
    path: str | None
    wall_s: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # PS+DFS: the evolve ids of the PS and the DFS run

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scored:
    plans: list[Any]  # MergePlan, or None for an empty dfs path
    fits: list[float | None]
    stderrs: list[float | None]
    todo: list[int]

    def best_stderr(self) -> float | None:
        """The standard error of the fittest point's fitness (from the cache when it was scored before; None when the
        cache predates the fitness cache table)."""
        ok = [(f, -i) for i, f in enumerate(self.fits) if f is not None]
        return self.stderrs[-max(ok)[1]] if ok else None


@dataclass(frozen=True)
class Searched:
    """Where a call to Search.run left the search: complete before this call, running (stopped early), or searched
    (budget spent, ready to be finished)."""

    generation: int
    wall_s: float
    status: str


def scoring_of(out: Any) -> dict[str, Any]:
    """What a candidate's scoring gave besides its fitness (an Outcome), as stored with it and in the cache."""
    return {"per_suite": out.per_suite, "seconds": round(out.seconds, 3), "swap_gap": out.swap_gap,
            "error": out.error, "stderr": out.stderr}


class LazyPool:
    """Opens the workers (engines load here) only when a candidate needs scoring."""

    def __init__(self, opener: Callable[[], Pool]) -> None:
        self.opener, self.pool = opener, None

    def map(self, recipes: list[dict[str, Any]], split: str | None = None, each: Any = None) -> list[Any]:
        if not recipes:
            return []
        if self.pool is None:
            self.pool = self.opener()
        return self.pool.map(recipes, split, each)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def folder_of(ref: str, base_dir: Path, store: Store) -> str:
    """An absolute model folder for a config reference (folder or store name/id)."""
    resolved = resolve_ref(ref, base_dir)
    if Path(resolved).is_dir():
        return resolved
    rec = store.get_model(ref)
    if not rec.path or not Path(rec.path).is_dir():
        raise HarnessError(f"model {ref!r} has no folder on disk", "materialize it, or point the config at a folder")
    return rec.path


def build_space(cfg: EvolveConfig, sources: list[str], base: str | None, engine_folder: str) -> Space | DfsSpace:
    """The searched space: merge parameters (PS) or a layer path (DFS, its memory checked before any search)."""
    if cfg.method == "dfs":
        from harness.evolve.dfs import DfsSpace, check_memory

        space = DfsSpace.build(cfg, sources)
        check_memory(space)
        return space
    n_layers = num_layers(engine_folder)
    check_layer_names(engine_folder, n_layers, cfg.granularity)
    return Space.build(cfg, sources, base, n_layers)


class Search:
    """One evolution run: set up from a config, then `run()`."""

    def __init__(self, cfg: EvolveConfig, base_dir: Path, store: Store) -> None:
        from harness.evaluate.run_settings import engine_versions
        from harness.evolve.fitness import check_heldout_apart
        from harness.merge import InMemoryMerger

        self.cfg, self.store = cfg, store
        self.sources = [folder_of(s, base_dir, store) for s in cfg.sources]
        self.base = folder_of(cfg.base, base_dir, store) if cfg.base else None
        self.engine_folder = self.base or self.sources[0]
        self.suites_root = str(resolve_ref(cfg.suites_dir, base_dir)) if cfg.suites_dir else None
        self.space = build_space(cfg, self.sources, self.base, self.engine_folder)
        # before any merge; the local worker scores with the tasks the check built
        self.built = check_heldout_apart(cfg, Path(self.suites_root) if self.suites_root else None)
        self.merger: InMemoryMerger = InMemoryMerger(store=store, seed=cfg.seed)
        plan = self.merger.plan(self.space.parent_recipe())
        self.parents = {p.path: p.model_id for p in plan.parents}
        self.names = {p.path: Path(p.path).name for p in plan.parents}
        self.engines = engine_versions(cfg.backend)
        self.fitness_key = hash_json({**cfg.fitness_key(), "data": self._data_hashes(), "score": self._score_rules(),
                                      "engines": self.engines})
        self.evolve_id = "ev" + hash_json({"config": cfg.identity(), "parents": self.parents})[:18]

    def _data_hashes(self) -> dict[str, str]:
        from harness.evolve.fitness import load_suite

        root = Path(self.suites_root) if self.suites_root else None
        split = self.cfg.search_split  # with the user-supplied files that split reads (suite_data.py)
        return {f.suite: load_suite(f.suite, root).data_hash(split) for f in self.cfg.fitness}

    def _score_rules(self) -> dict[str, Any]:
        """Each fitness suite's aggregate (how its tasks make its score, hence the fitness): a changed rule is a new
        fitness, never one read from the cache."""
        from harness.evolve.fitness import load_suite

        root = Path(self.suites_root) if self.suites_root else None
        return {f.suite: load_suite(f.suite, root).aggregate.model_dump(mode="json") for f in self.cfg.fitness}

    def stored_config(self) -> dict[str, Any]:
        return {"config": self.cfg.model_dump(mode="json"), "fitness_key": self.fitness_key, "engines": self.engines,
                "parents": self.parents, "slots": [list(s) for s in self.space.slots()],
                "sources": self.sources, "base": self.base}

    def worker_spec(self) -> WorkerSpec:
        import json

        from harness.evaluate.backends.base import BackendOptions, ModelTarget
        from harness.evaluate.run_settings import resolve_bos
        from harness.evolve.parallel import WorkerSpec

        folder = Path(self.engine_folder)
        bos = resolve_bos(ModelTarget("engine", folder, folder.name), BackendOptions())
        vocab = int(json.loads((folder / "config.json").read_text()).get("vocab_size") or 100)
        return WorkerSpec(self.cfg.model_dump(mode="json"), self.engine_folder, self.suites_root, bos, vocab,
                          self.cfg.threads)

    # ------------------------------------------------------------------ the loop
    def run(self, resume: bool = False, on_generation: Callable[[GenerationReport], None] | None = None,
            stop_after: int | None = None) -> Searched:
        """Search until the budget is spent (or `stop_after` generations in this call). Finishing the run (the best
        candidate materialised and evaluated) is the workflow's: harness.workflows.evolve."""
        t0 = time.perf_counter()
        prev = records.get_run(self.store, self.evolve_id)
        if prev is not None and not resume:
            if prev.status == "complete":
                return Searched(prev.generation, time.perf_counter() - t0, "complete")
            raise HarnessError(f"evolve run {self.evolve_id} exists ({prev.status}, generation {prev.generation})",
                               "pass --resume to continue it, or change the config (e.g. its seed)")
        if prev is not None:  # one search, one fitness: never resumed under other engines, data or score rules
            check_same_fitness(self.evolve_id, prev.config, self.fitness_key, self.engines)
        state = prev.optimizer_state if prev and prev.optimizer_state else None
        if state is not None:
            optimizer_state.load(state, self.new_optimizer())  # a damaged or crafted state is refused before any work
        generation = prev.generation if prev else 0
        records.start_run(self.store, self.evolve_id, self.stored_config())
        pool = LazyPool(self.open_pool)
        try:
            if state is None:
                state = self.first_state(pool)
            done = 0
            while not self.spent(generation, time.perf_counter() - t0) and (stop_after is None or done < stop_after):
                generation += 1
                state, report = self.generation(state, generation, pool)
                done += 1
                if on_generation:
                    on_generation(report)
            if stop_after is not None and not self.spent(generation, time.perf_counter() - t0):
                return Searched(generation, time.perf_counter() - t0, "running")
            if self.cfg.finalists is not None:
                self.score_finalists(pool)
        except BaseException:
            records.finish_run(self.store, self.evolve_id, "failed")
            raise
        finally:
            pool.close()
        return Searched(generation, time.perf_counter() - t0, "searched")

    def first_state(self, pool: Pool) -> bytes:
        """The optimizer before generation 1: its mean at the space's start, or, with `starts`, at the fittest hand
        setting, all of them scored and recorded as generation 0 (they compete for the final pick like any
        candidate)."""
        if not self.cfg.starts:
            return optimizer_state.dump(self.new_optimizer())
        assert isinstance(self.space, Space)
        xs = [self.space.point(s) for s in self.cfg.starts]
        fits = self.score_points(xs, 0, pool).fits
        scored = [(f, -i) for i, f in enumerate(fits) if f is not None]
        mean = xs[-max(scored)[1]] if scored else self.space.start()
        state = optimizer_state.dump(self.new_optimizer(mean))
        best = records.best(records.candidates(self.store, self.evolve_id))
        records.save_generation(self.store, self.evolve_id, 0, state, best.model_id if best else None)
        return state

    def new_optimizer(self, mean: list[float] | None = None) -> Any:
        import numpy as np
        from cmaes import CMA

        dim = self.space.dim
        start = self.space.start() if mean is None else mean
        return CMA(mean=np.array(start, dtype=float), sigma=self.cfg.sigma,
                   bounds=np.array([[0.0, 1.0]] * dim), seed=self.cfg.seed, population_size=self.cfg.population)

    def open_pool(self) -> Pool:
        from harness.evolve.parallel import open_pool

        return open_pool(self.worker_spec(), self.cfg.workers, self.cfg.ray_address, self.built)

    def spent(self, generation: int, elapsed: float) -> bool:
        b = self.cfg.budget
        return ((b.generations is not None and generation >= b.generations)
                or (b.evaluations is not None and generation * self.cfg.population >= b.evaluations)
                or (b.minutes is not None and elapsed >= 60 * b.minutes))

    def generation(self, state: bytes, generation: int, pool: Pool) -> tuple[bytes, GenerationReport]:
        """One generation from the saved optimizer state (JSON data, harness.evolve.optimizer_state); returns the
        next state. Every generation starts from a saved state (cmaes symmetrises the covariance when saving), so
        resumed and uninterrupted runs follow the same numbers to the last bit."""
        t0 = time.perf_counter()
        opt = optimizer_state.load(state, self.new_optimizer())
        # cmaes leaves its random state out of its saved state: each generation draws from a seed of its own, so a
        # resumed run asks exactly what an uninterrupted one asks
        opt.reseed_rng((self.cfg.seed * 1_000_003 + generation) % 2**32)
        xs = [opt.ask() for _ in range(opt.population_size)]
        scored = self.score_points(xs, generation, pool)
        plans, fits, todo = scored.plans, scored.fits, scored.todo
        recipes = [self.space.recipe(x) for x in xs]
        opt.tell([(x, PENALTY if f is None else -f) for x, f in zip(xs, fits, strict=True)])
        if generation == 1 and self.cfg.check_every:
            self.baseline_check(plans, recipes, fits, pool)
        best = records.best(records.candidates(self.store, self.evolve_id))
        heldout = self.heldout_check(best, generation, pool)
        state = optimizer_state.dump(opt)
        records.save_generation(self.store, self.evolve_id, generation, state,
                                best.model_id if best else None)
        ok = [f for f in fits if f is not None]
        secs = time.perf_counter() - t0
        return state, GenerationReport(
            generation, max(ok) if ok else None, sum(ok) / len(ok) if ok else None,
            float(getattr(opt, "_sigma", float("nan"))), len(todo), sum(p is not None for p in plans) - len(todo),
            len(xs) - len(ok), secs, 60 * len(xs) / secs if secs else 0.0,
            best.fitness if best else None, best.model_id if best else None, heldout, scored.best_stderr(),
        )

    def score_points(self, xs: list[Any], generation: int, pool: Pool) -> Scored:
        """Merge plans, fitness of each point (None: failed merge or empty path), its standard error and the indices
        scored now (not cached); every point is recorded as a candidate of `generation`."""
        recipes = [self.space.recipe(x) for x in xs]
        plans = [None if r is None else self.merger.plan(r) for r in recipes]
        known, todo = self.cached(plans)

        def keep(k: int, out: Any) -> None:  # cached as soon as scored: a kill mid-generation keeps it
            records.cache_fitness(self.store, plans[todo[k]].model_id, self.fitness_key,  # type: ignore[union-attr]
                                  out.fitness, scoring_of(out))

        outcomes = dict(zip(todo, pool.map([recipes[i] for i in todo], each=keep), strict=True))  # type: ignore[misc]
        fits: list[float | None] = []
        errs: list[float | None] = []
        rows: list[records.CandidateRow] = []
        for i, (x, plan) in enumerate(zip(xs, plans, strict=True)):
            out = outcomes.get(i)
            if plan is None:
                errs.append(None)
                rows.append(records.CandidateRow(i, "empty-path", {
                    "values": self.space.describe(x), "x": [float(v) for v in x],
                    "error": "the path selects no layer"}, None))
                fits.append(None)
                continue
            if out is not None:
                known[plan.model_id] = (out.fitness, scoring_of(out))
            fit, scoring = known[plan.model_id]
            errs.append(scoring.get("stderr"))
            values = self.space.describe(x, self.names)
            kept = scoring if out is not None else {k: scoring[k] for k in ("per_suite", "stderr") if k in scoring}
            extra = {"x": [float(v) for v in x], "reused": out is None, **kept}
            records.add_candidate_model(self.store, self.evolve_id, generation, i, plan, values)
            rows.append(records.CandidateRow(i, plan.model_id, {"values": values, **extra}, fit))
            fits.append(fit)
        records.record_generation(self.store, self.evolve_id, generation, rows)
        return Scored(plans, fits, errs, todo)

    def cached(self, plans: list[Any]) -> tuple[dict[str, tuple[float | None, dict[str, Any]]], list[int]]:
        """(model id -> (fitness, what its scoring gave) from the fitness cache, indices to score: the first of
        each model not cached). An empty dfs path (plan None) is neither: fitness NULL, never merged nor loaded."""
        known: dict[str, tuple[float | None, dict[str, Any]]] = {}
        todo: list[int] = []
        for i, plan in enumerate(plans):
            if plan is None:
                continue
            found, fit, outcome = records.cached_fitness(self.store, plan.model_id, self.fitness_key)
            if found:
                known[plan.model_id] = (fit, outcome)
            elif plan.model_id not in {plans[j].model_id for j in todo}:
                todo.append(i)
        return known, todo

    def baseline_check(self, plans: list, recipes: list, fits: list[float | None], pool: Pool) -> None:
        """Held-out scores of every first-generation candidate: before any selection, their search-minus-held-out
        gaps show how far the two splits differ by chance, the yardstick the overfitting analysis measures the
        final pick's gap against (harness.analysis.overfit.evolve_flags)."""
        todo: dict[str, int] = {}
        for i, (plan, fit) in enumerate(zip(plans, fits, strict=True)):
            if fit is not None and plan is not None:
                todo.setdefault(plan.model_id, i)
        outs = pool.map([recipes[i] for i in todo.values()], split=self.cfg.heldout_split)
        for model_id, out in zip(todo, outs, strict=True):
            if out.fitness is not None:
                records.set_heldout(self.store, self.evolve_id, model_id, out.fitness)

    def score_finalists(self, pool: Pool) -> None:
        """The declared second selection (config `finalists`): the fittest `count` candidates scored on its split,
        each once (a resumed run keeps the scores it has); the workflow picks the best of them."""
        fin = self.cfg.finalists
        assert fin is not None
        todo = [c for c in records.top(records.candidates(self.store, self.evolve_id), fin.count)
                if "finalist" not in c.params]
        outs = pool.map([self.space.recipe(c.params["x"]) for c in todo], split=fin.split)
        for c, out in zip(todo, outs, strict=True):
            records.set_finalist(self.store, self.evolve_id, c.model_id, fin.split, out.fitness)

    def heldout_check(self, best: records.Candidate | None, generation: int, pool: Pool) -> float | None:
        every = self.cfg.check_every
        if best is None or not every or generation % every:
            return None
        if best.heldout is not None:
            return best.heldout
        out = pool.map([self.space.recipe(best.params["x"])], split=self.cfg.heldout_split)[0]
        if out.fitness is not None:
            records.set_heldout(self.store, self.evolve_id, best.model_id, out.fitness)
        return out.fitness
