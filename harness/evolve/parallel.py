"""Evaluating candidates: one Worker = one in-memory merger + one live engine + the search split's lm-eval tasks.

    worker = Worker(spec)                 # loads the engine once
    worker.evaluate(recipe)               # Outcome(fitness, per_suite, seconds, swap_gap, error)

`local_pool(spec)` runs one Worker in this process. `ray_pool(spec, n, address)` runs n Workers as Ray actors
(`pip install 'harness[ray]'`; a local Ray on CPU, or a cluster address for GPUs, one engine per actor, one GPU
each when the cluster has them) and hands candidates to whichever actor is free. Scores do not depend on which
worker evaluated a candidate, so a parallel search gives the same result as a serial one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable (it travels to Ray actors): model folders are absolute paths."""

    config: dict[str, Any]  # EvolveConfig.model_dump()
    engine_folder: str
    suites_root: str | None
    add_bos_token: bool | None
    probe_vocab: int
    threads: int | None = None


@dataclass(frozen=True)
class Outcome:
    fitness: float | None
    per_suite: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    swap_gap: float | None = None  # logprob gap engine vs transformers, when checked
    error: str | None = None
    stderr: float | None = None  # of the fitness (harness.evolve.fitness.SplitTasks.stderr)


Each = Callable[[int, Outcome], None] | None  # called with (index, outcome) as each recipe is scored


class Worker:
    def __init__(self, spec: WorkerSpec, built: dict[str, Any] | None = None) -> None:
        """`built`: split -> its SplitTasks where the caller has them (the search's, built for its held-out
        check), else each split's are built here when first asked."""
        from harness.evolve.config import EvolveConfig
        from harness.evolve.engines import Reference, open_engine, probe_prompts
        from harness.merge import InMemoryMerger

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.cfg = EvolveConfig.model_validate(spec.config)
        root = Path(spec.suites_root) if spec.suites_root else None
        self.merger = InMemoryMerger(seed=self.cfg.seed)
        self.engine = open_engine(self.cfg.backend, Path(spec.engine_folder), self.cfg.dtype, self.cfg.batch_size,
                                  spec.add_bos_token)
        self.reference = Reference(Path(spec.engine_folder), self.cfg.dtype)
        self.probes = probe_prompts(spec.probe_vocab)
        self.built, self.tasks, self._root = built or {}, {}, root
        self.split_tasks(self.cfg.search_split)  # built now (or taken from `built`): the first candidate waits less
        self.swaps = 0

    def load(self, recipe: dict[str, Any]) -> float | None:
        """Merge in memory and swap into the engine; checks logprobs against transformers every verify_every."""
        from harness.evolve.engines import verify

        tensors = self.merger.merge(recipe)
        self.engine.swap(tensors)
        self.swaps += 1
        gap = None
        every = self.cfg.verify_every
        if self.engine.name != "hf" and (self.swaps == 1 or (every and self.swaps % every == 0)):
            gap = verify(self.engine, self.reference, tensors, self.probes)
        return gap

    def split_tasks(self, split: str) -> Any:
        from harness.evolve.fitness import SplitTasks

        if split not in self.tasks:
            limit = self.cfg.limit if split == self.cfg.search_split else self.cfg.heldout_limit
            self.tasks[split] = self.built.get(split) or SplitTasks.build(self.cfg.fitness, split, self._root, limit)
        return self.tasks[split]

    def evaluate(self, recipe: dict[str, Any], split: str | None = None) -> Outcome:
        """Score a recipe on `split` (None: the config's search split), each split's tasks by its own name: a held-out
        split that is literally named "search" beside another search split is that split, not the search one."""
        t0 = time.perf_counter()
        try:
            gap = self.load(recipe)
        except HarnessError as exc:
            if "not finite" in exc.problem or "non-finite" in exc.problem or "NaN" in exc.problem:
                return Outcome(None, seconds=time.perf_counter() - t0, error=exc.line())
            raise
        score = self.split_tasks(split or self.cfg.search_split).score(self.engine.lm)
        return Outcome(score.fitness, score.per_suite, time.perf_counter() - t0, gap, stderr=score.stderr)

    def close(self) -> None:
        self.engine.close()


class Pool(Protocol):
    def map(self, recipes: list[dict[str, Any]], split: str | None = None, each: Each = None) -> list[Outcome]: ...

    def close(self) -> None: ...


class LocalPool:
    def __init__(self, spec: WorkerSpec, built: dict[str, Any] | None = None) -> None:
        self.worker = Worker(spec, built)

    def map(self, recipes: list[dict[str, Any]], split: str | None = None, each: Each = None) -> list[Outcome]:
        return told((self.worker.evaluate(r, split) for r in recipes), each)

    def close(self) -> None:
        self.worker.close()


class RayPool:
    """n Ray actors, each a Worker; candidates go to free actors, results come back in order."""

    def __init__(self, spec: WorkerSpec, n: int, address: str | None) -> None:
        from harness.cluster import connect_ray

        ray = connect_ray(address, "workers > 1", "set workers: 1")
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= n else 0
        actor = ray.remote(num_gpus=gpus, num_cpus=1)(Worker)
        self.ray = ray
        self.actors = [actor.remote(spec) for _ in range(n)]

    def map(self, recipes: list[dict[str, Any]], split: str | None = None, each: Each = None) -> list[Outcome]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        return told(pool.map(lambda a, r: a.evaluate.remote(r, split), recipes), each)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def told(outcomes: Any, each: Each) -> list[Outcome]:
    """The outcomes in order, each passed to `each` as soon as it comes (an iterator is consumed lazily)."""
    out: list[Outcome] = []
    for i, o in enumerate(outcomes):
        if each is not None:
            each(i, o)
        out.append(o)
    return out


def open_pool(spec: WorkerSpec, workers: int, address: str | None, built: dict[str, Any] | None = None) -> Pool:
    """One local worker (scoring with `built`, split -> SplitTasks, where given) or `workers` Ray actors (each
    builds its own: task objects do not travel)."""
    if workers <= 1:
        return LocalPool(spec, built)
    return RayPool(spec, workers, address)
