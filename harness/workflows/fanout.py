"""`harness eval M1 ... Mn --workers N [--ray-address ADDR]`: models fanned out to Ray actors, one engine each.

    evaluation = evaluate_fanout(models, "zoo_math", opts, workers=2)   # Evaluation, results in the models' order

This process resolves every model (merging recipes) in the store first, then hands each model folder to whichever
actor is free. An actor evaluates into a private store of its own (a temporary DuckDB file) and sends the run back:
its record, scores and samples. Only this process writes the real store, each run in two steps as the runner does
(started, then scores + samples + complete in one transaction), so a run is never shown complete half-written.

An actor that dies mid-run (its process killed, a node lost) loses only its private store: its model goes back in
the queue for a fresh actor (at most RETRIES times). A complete run already in the store is kept and reported as
reused (the actor's copy is dropped; its answers came from the shared request cache when workers share this
machine's results folder). The backend options travel to every actor unchanged; each actor asks Ray for the GPUs
of one engine (vLLM's --tensor-parallel-size x --data-parallel-size, else 1) when the cluster has them for every
actor; a cluster with GPUs but too few for the engines asked for is refused before any actor starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd

    from harness.evaluate.runner import EvalOptions, RunResult
    from harness.store import RunRecord, Score, Store

RETRIES = 2  # fresh actors a model gets after the one evaluating it died


@dataclass(frozen=True)
class Finished:
    """What an actor sends back for one model: the run as its private store holds it, or the error."""

    result: RunResult | None
    run: RunRecord | None = None
    scores: tuple[Score, ...] = ()
    samples: pd.DataFrame | None = None
    error: tuple[str, str, int] | None = None  # HarnessError's problem, fix, exit code


class EvalWorker:
    """One engine's worth of work: the suite's plan built once, runs written to a private store."""

    def __init__(self, suite: str, opts: EvalOptions, threads: int | None) -> None:
        from harness.evaluate.runner import plan_for
        from harness.store import Store

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.opts = opts
        self.plan = plan_for(suite, opts)
        self.folder = Path(tempfile.mkdtemp(prefix="harness_worker_"))
        self.store = Store(self.folder / "worker.duckdb")
        self.store.init()

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, folder: str) -> Finished:
        from harness.evaluate.runner import evaluate_model

        try:
            res = evaluate_model(folder, self.plan.suite, self.opts, self.store, plan=self.plan)
        except HarnessError as exc:
            return Finished(None, error=(exc.problem, exc.fix, exc.exit_code))
        with self.store.reading():
            run = self.store.get_run(res.run_id)
            samples = self.store.samples(res.run_id)
        return Finished(res, run, tuple(res.scores), samples)


def evaluate_fanout(
    models: Sequence[str], suite_name: str, opts: EvalOptions, workers: int, ray_address: str | None = None,
    store: Store | None = None, on_done: Callable[[str, Any], None] | None = None,
) -> Any:
    """Like workflows.evaluate.evaluate for lm-eval suites, with the models spread over `workers` Ray actors."""
    from harness.evaluate.runner import get_backend, plan_for
    from harness.store import Store
    from harness.suites import load_suite
    from harness.workflows.evaluate import Evaluation, materialise

    suite = load_suite(suite_name.partition(":")[0])
    if suite.kind == "judge":
        raise HarnessError("--workers fans out lm-eval suites; judge suites run in one process",
                           "drop --workers for mt_bench / vicuna_bench")
    store = store or Store()
    if not store.path.exists():
        store.init()
    get_backend(opts.backend)
    plan_for(suite_name if ":" in suite_name else suite, opts)  # bad split/tier/tasks: fail before any actor
    folders: dict[int, str] = {}
    out: dict[int, Any] = {}
    for i, ref in enumerate(models):
        try:
            folders[i] = model_folder(materialise(ref, store), store, opts)
        except HarnessError as exc:
            out[i] = exc
    pool = ActorPool(suite_name, replace(opts, progress=None), max(1, min(workers, len(folders))), ray_address)
    try:
        for i, finished in pool.run(folders):
            out[i] = finished if isinstance(finished, HarnessError) else record(finished, store, opts.rerun)
            if on_done:
                on_done(models[i], out[i])
    finally:
        pool.close()
    return Evaluation(suite, [out[i] for i in range(len(models))])


def model_folder(ref: str, store: Store, opts: EvalOptions) -> str:
    """The model's folder, registered in the store here (actors see folders only)."""
    from harness.evaluate.target import resolve_model

    target = resolve_model(ref, store, opts.backend_options.base_url)
    if target.path is None:
        raise HarnessError(f"{ref} has no local folder; --workers hands folders to its actors",
                           "drop --workers for served models")
    return str(Path(target.path).resolve())


def record(finished: Finished, store: Store, rerun: bool) -> RunResult | HarnessError:
    """Write an actor's run into the store (the one writer); a complete run already there is kept."""
    if finished.error is not None:
        return HarnessError(*finished.error)
    res = finished.result
    assert res is not None and finished.run is not None and finished.samples is not None
    base = res.run_id.split("-")[0]  # the run's id without the private store's attempt number ("r<hash>-2")
    done = [a for a in store.attempts(base) if a.status == "complete"]
    if done and not rerun:
        with store.reading():
            scores = store.scores(done[-1].run_id)
        return replace(res, run_id=done[-1].run_id, scores=scores, reused=True)
    run_id = store.attempt_id(base)
    samples = finished.samples.assign(run_id=run_id)
    store.start_run(replace(finished.run, run_id=run_id))
    store.finish_run(run_id, list(finished.scores), samples)
    return replace(res, run_id=run_id, reused=False)


def actor_gpus(cluster: int, workers: int, per_engine: int) -> int:
    """GPUs each actor asks Ray for: an engine's tensor x data parallel share when the cluster holds one per
    actor; none on a cluster without GPUs (CPU engines); refused when the cluster has GPUs but too few."""
    if cluster >= workers * per_engine:
        return per_engine
    if per_engine == 1 or cluster == 0:
        return 0
    raise HarnessError(f"--workers {workers} engines of {per_engine} GPUs each need {workers * per_engine} GPUs; "
                       f"the cluster has {cluster}",
                       f"use --workers {max(1, cluster // per_engine)} or a smaller --tensor-parallel-size")


class ActorPool:
    """n Ray actors, each an EvalWorker; a model goes to whichever actor is free; a dead actor is replaced and its
    model queued again."""

    def __init__(self, suite: str, opts: EvalOptions, n: int, address: str | None) -> None:
        from harness.cluster import connect_ray

        ray = connect_ray(address, "--workers", "drop --workers")
        gpus = actor_gpus(int(ray.cluster_resources().get("GPU", 0)), n, opts.backend_options.gpus_per_engine())
        threads = None if address or gpus else max(1, (os.cpu_count() or 1) // n)  # local CPUs shared out
        self.ray = ray
        self.remote = ray.remote(num_gpus=gpus, num_cpus=1, max_restarts=0)(EvalWorker)
        self.args = (suite, opts, threads)
        self.actors = [self.remote.remote(*self.args) for _ in range(n)]

    def run(self, folders: dict[int, str]) -> Any:
        """Yield (index, Finished or HarnessError) as runs finish."""
        from ray.exceptions import RayActorError, RayTaskError

        queue, tries, idle, busy = list(folders.items()), dict.fromkeys(folders, 0), list(self.actors), {}
        while queue or busy:
            while queue and idle:
                i, folder = queue.pop(0)
                actor = idle.pop()
                busy[actor.evaluate.remote(folder)] = (actor, i)
            (ref,), _ = self.ray.wait(list(busy), num_returns=1)
            actor, i = busy.pop(ref)
            try:
                finished = self.ray.get(ref)
            except RayActorError:  # the worker died: nothing of this run reached the store
                self.actors.remove(actor)
                idle.append(self._replace())
                tries[i] += 1
                if tries[i] <= RETRIES:
                    queue.append((i, folders[i]))
                    continue
                finished = HarnessError(f"the worker evaluating {folders[i]} died {tries[i]} times",
                                        "check the workers' memory and logs (ray logs), then run it again")
            except RayTaskError as exc:
                idle.append(actor)
                text = (str(exc.cause or exc).strip().splitlines() or ["error"])[-1][:300]
                finished = HarnessError(f"the worker failed on {folders[i]}: {text}", "run it with --workers 1")
            else:
                idle.append(actor)
            yield i, finished

    def _replace(self) -> Any:
        actor = self.remote.remote(*self.args)
        self.actors.append(actor)
        return actor

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
