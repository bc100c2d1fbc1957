"""`harness eval M1 ... Mn --workers N [--ray-address ADDR]`: models, and pieces of their suite split, fanned out to
Ray actors, one engine each.

    evaluation = evaluate_fanout(models, "zoo_math", opts, workers=2)   # Evaluation, results in the models' order

This process resolves every model (merging recipes) in the store first and prepares its run as the runner does
(run id, attempt, reuse). A complete run already stored is reused without any actor. Each run left is cut into
pieces, groups of its tasks (harness/evaluate/pieces.py), only when there are more workers than runs left: the
workers are shared out over the runs (workers // runs pieces each, the first workers % runs runs one more, never
more pieces than tasks), so one model with --workers 4 on mmlu's 57 tasks is 4 pieces of ~14 tasks balanced by
documents, and 8 models with --workers 2 stay 8 whole runs (a piece costs an engine load; models alone keep every
actor busy). Each actor builds the suite's plan once from its node's suites (refusing pieces when its data hash is
not this machine's); whichever actor is free takes the next piece and sends back lm-eval's output for it (results
and logged samples), writing nothing. This process alone writes the store, each run in the runner's two steps: started
when its first piece goes out, then, once every piece is back, the pieces' outputs joined and turned into rows by
the runner's own code (lm_eval_run.record_results: scores with the `_aggregate` row, samples, results/runs/<run-id>/)
in one transaction. So a split run is stored exactly as a one-process run would be: same run id and record, same
rows.

An actor that dies mid-piece (its process killed, a node lost) loses only that piece: it goes back in the queue for
a fresh actor (at most RETRIES times). A piece that fails fails its run (marked failed with the one-line error,
its other pieces dropped); the other models go on. The backend options travel to every actor unchanged; each actor
asks Ray for the GPUs of one engine (vLLM's --tensor-parallel-size x --data-parallel-size, else 1) when the
cluster has them for every actor; a cluster with GPUs but too few for the engines asked for is refused before any
actor starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.evaluate.backends.base import BackendOptions, ModelTarget
    from harness.evaluate.lm_eval_run import LmEvalOutput
    from harness.evaluate.plan import Plan
    from harness.evaluate.runner import EvalOptions, Prepared, RunResult
    from harness.store import Store

RETRIES = 2  # fresh actors a piece gets after the one evaluating it died
Key = tuple[int, int]  # (model index, piece index)


@dataclass(frozen=True)
class Job:
    """One piece of one run, as an actor needs it: the model, the piece's tasks, the run's backend options and
    settings (the answer-changing ones key the request cache), and the data hash the actor's plan must have."""

    target: ModelTarget
    tasks: tuple[str, ...]
    bo: BackendOptions
    settings: dict[str, Any]
    data_hash: str | None


@dataclass(frozen=True)
class Finished:
    """What an actor sends back for one piece: lm-eval's output, or the error."""

    output: LmEvalOutput | None
    error: tuple[str, str, int] | None = None  # HarnessError's problem, fix, exit code


class EvalWorker:
    """One engine's worth of work: the suite's plan built once from this node's suites, pieces of it evaluated with
    lm-eval; nothing written to any store."""

    def __init__(self, suite: str, opts: EvalOptions, threads: int | None) -> None:
        from harness.evaluate.runner import plan_for

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.opts = opts
        self.plan = plan_for(suite, opts)

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, job: Job) -> Finished:
        from harness.evaluate.lm_eval_run import lm_eval_results
        from harness.evaluate.pieces import piece
        from harness.evaluate.runner import quiet_engines

        quiet_engines()
        if job.data_hash != self.plan.data_hash:
            return Finished(None, error=(
                f"the worker's copy of suite {self.plan.suite.name} differs from this machine's (data hash "
                f"{str(self.plan.data_hash)[:12]}, here {str(job.data_hash)[:12]})",
                "install the same harness and suites on every node of the cluster", 2))
        try:
            plan = piece(self.plan, list(job.tasks))
            return Finished(lm_eval_results(job.target, plan, self.opts, job.bo, job.settings))
        except HarnessError as exc:
            return Finished(None, error=(exc.problem, exc.fix, exc.exit_code))


def evaluate_fanout(
    models: Sequence[str], suite_name: str, opts: EvalOptions, workers: int, ray_address: str | None = None,
    store: Store | None = None, on_done: Callable[[str, Any], None] | None = None, merge_seed: int = 0,
) -> Any:
    """Like workflows.evaluate.evaluate for lm-eval suites, with models and pieces spread over `workers` actors."""
    from harness.evaluate.options import check_backend
    from harness.evaluate.runner import plan_for
    from harness.run_questions import fill_question_stderr
    from harness.store import Store
    from harness.suites import load_suite
    from harness.workflows.evaluate import Evaluation

    suite = load_suite(suite_name.partition(":")[0])
    if suite.kind == "judge":
        raise HarnessError("--workers fans out lm-eval suites; judge suites run in one process",
                           "drop --workers for mt_bench / vicuna_bench")
    store = store or Store()
    if not store.path.exists():
        store.init()
    check_backend(opts)
    plan = plan_for(suite_name if ":" in suite_name else suite, opts)  # bad split/tier/tasks: fail before actors
    fill_question_stderr(store)  # runs written before v5, as evaluate_model does (harness/run_questions.py)
    out, runs = prepare_runs(models, plan, opts, store, on_done, merge_seed)
    if runs:
        assembly = Assembly(plan, runs, store)
        assembly.cut(workers)
        n = max(1, min(workers, len(assembly.jobs)))
        pool = ActorPool(suite_name, replace(opts, progress=None), n, ray_address)
        try:
            for i, res in assembly.run(pool):
                out[i] = res
                if on_done:
                    on_done(models[i], res)
        finally:
            pool.close()
    return Evaluation(suite, [out[i] for i in range(len(models))])


def prepare_runs(models: Sequence[str], plan: Plan, opts: EvalOptions, store: Store,
                 on_done: Callable[[str, Any], None] | None = None,
                 merge_seed: int = 0) -> tuple[dict[int, Any], dict[int, Prepared]]:
    """Each model resolved (recipes merged with `merge_seed`) and its run prepared here: a reused run or a model
    that can't be evaluated is done already (first dict); the runs left to evaluate (second)."""
    from harness.evaluate.runner import RunResult, prepare_run
    from harness.workflows.evaluate import materialise

    out: dict[int, Any] = {}
    runs: dict[int, Prepared] = {}
    for i, ref in enumerate(models):
        try:
            prepared = prepare_run(model_folder(materialise(ref, store, merge_seed), store, opts), plan, opts, store)
        except HarnessError as exc:
            prepared = exc
        if isinstance(prepared, (RunResult, HarnessError)):
            out[i] = prepared
            if on_done:
                on_done(models[i], prepared)
        else:
            runs[i] = prepared
    return out, runs


def pieces_per_run(runs: int, workers: int) -> list[int]:
    """How many pieces each of `runs` runs is cut into: 1 each unless workers outnumber runs, then the workers
    shared out (the first runs get the remainder)."""
    if workers <= runs:
        return [1] * runs
    return [workers // runs + (1 if k < workers % runs else 0) for k in range(runs)]


class Assembly:
    """The prepared runs, their pieces and what came back: each run started when its first piece goes out,
    recorded (or failed) once its pieces are in."""

    def __init__(self, plan: Plan, runs: dict[int, Prepared], store: Store) -> None:
        self.plan, self.runs, self.store = plan, runs, store
        self.jobs: dict[Key, Job] = {}
        self.outputs: dict[int, dict[int, LmEvalOutput]] = {i: {} for i in runs}
        self.started: dict[int, float] = {}

    def cut(self, workers: int) -> None:
        from harness.evaluate.pieces import split_plan, task_docs

        counts = pieces_per_run(len(self.runs), workers)
        docs = task_docs(self.plan) if max(counts) > 1 and len(self.plan.tasks) > 1 else None  # once for all runs
        for i, n in zip(self.runs, counts, strict=True):
            p = self.runs[i]
            for j, sub in enumerate(split_plan(self.plan, n, docs)):
                self.jobs[(i, j)] = Job(p.target, sub.tasks, p.bo, p.run.settings, self.plan.data_hash)

    def run(self, pool: ActorPool) -> Any:
        """Yield (model index, RunResult or HarnessError) as runs finish, the pieces evaluated by the pool."""
        try:
            for key, finished in pool.run(self.jobs, on_start=self.start):
                i = key[0]
                if i not in self.outputs:  # its run already failed
                    continue
                res = self.take(key, finished)
                if res is not None:
                    pool.drop(lambda k, i=i: k[0] == i)
                    yield i, res
        finally:
            for i in self.outputs:  # interrupted: a started run is marked failed, as the runner does
                if i in self.started:
                    self.store.fail_run(self.runs[i].run.run_id, "interrupted")

    def start(self, key: Key) -> None:
        i = key[0]
        if i not in self.started:
            self.started[i] = time.perf_counter()
            self.store.start_run(self.runs[i].run)

    def take(self, key: Key, finished: Finished | HarnessError) -> RunResult | HarnessError | None:
        """A piece back: None while the run waits for others, else the run recorded or failed."""
        i, j = key
        if isinstance(finished, Finished) and finished.error is None and finished.output is not None:
            self.outputs[i][j] = finished.output
            if len(self.outputs[i]) < sum(1 for k in self.jobs if k[0] == i):
                return None
            return self.record(i)
        err = finished if isinstance(finished, HarnessError) else HarnessError(*(finished.error or ("?", "?", 1)))
        self.store.fail_run(self.runs[i].run.run_id, err.line())
        del self.outputs[i]
        return err

    def record(self, i: int) -> RunResult | HarnessError:
        from harness.evaluate.lm_eval_run import record_results
        from harness.evaluate.pieces import merge_outputs
        from harness.evaluate.run_errors import one_line
        from harness.evaluate.runner import RunResult

        p, pieces = self.runs[i], self.outputs.pop(i)
        merged = merge_outputs(self.plan, [pieces[j] for j in sorted(pieces)])
        merged.config.start_time = self.started[i]  # the results file's evaluation time: this run's wall here
        try:
            scores, folder = record_results(p.target, p.run, merged, self.store)
        except BaseException as exc:  # a non-finite score, a full disk: the run is failed, as the runner does
            self.store.fail_run(p.run.run_id, one_line(exc))
            if isinstance(exc, HarnessError):
                return exc
            raise
        return RunResult(p.run.run_id, p.target.model_id, p.target.name, self.plan.suite.name, self.plan.split,
                         p.run.backend, "complete", scores, folder, cached_requests=merged.hits,
                         new_requests=merged.misses, seconds=time.perf_counter() - self.started[i],
                         planned_tasks=merged.planned, cuts=merged.cuts)


def model_folder(ref: str, store: Store, opts: EvalOptions) -> str:
    """The model's folder, registered in the store here (actors see folders only)."""
    from harness.evaluate.target import resolve_model

    target = resolve_model(ref, store, opts.backend_options.base_url)
    if target.path is None:
        raise HarnessError(f"{ref} has no local folder; --workers hands folders to its actors",
                           "drop --workers for served models")
    return str(Path(target.path).resolve())


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
    """n Ray actors, each an EvalWorker; a job goes to whichever actor is free; a dead actor is replaced and its
    job queued again."""

    def __init__(self, suite: str, opts: EvalOptions, n: int, address: str | None) -> None:
        from harness.cluster import connect_ray

        ray = connect_ray(address, "--workers", "drop --workers")
        gpus = actor_gpus(int(ray.cluster_resources().get("GPU", 0)), n, opts.backend_options.gpus_per_engine())
        threads = None if address or gpus else max(1, (os.cpu_count() or 1) // n)  # local CPUs shared out
        self.ray = ray
        self.remote = ray.remote(num_gpus=gpus, num_cpus=1, max_restarts=0)(EvalWorker)
        self.args = (suite, opts, threads)
        self.actors = [self.remote.remote(*self.args) for _ in range(n)]
        self.queue: list[tuple[Any, Job]] = []

    def drop(self, which: Callable[[Any], bool]) -> None:
        """Forget the queued jobs whose key matches (their run failed)."""
        self.queue = [(k, job) for k, job in self.queue if not which(k)]

    def run(self, jobs: dict[Any, Job], on_start: Callable[[Any], None] | None = None) -> Any:
        """Yield (key, Finished or HarnessError) as jobs finish; on_start(key) just before a job goes out."""
        from ray.exceptions import RayActorError, RayTaskError

        self.queue, tries, idle, busy = list(jobs.items()), dict.fromkeys(jobs, 0), list(self.actors), {}
        while self.queue or busy:
            while self.queue and idle:
                key, job = self.queue.pop(0)
                if on_start:
                    on_start(key)
                actor = idle.pop()
                busy[actor.evaluate.remote(job)] = (actor, key)
            (ref,), _ = self.ray.wait(list(busy), num_returns=1)
            actor, key = busy.pop(ref)
            try:
                finished = self.ray.get(ref)
            except RayActorError:  # the worker died: only this job is lost
                self.actors.remove(actor)
                idle.append(self._replace())
                tries[key] += 1
                if tries[key] <= RETRIES:
                    self.queue.append((key, jobs[key]))
                    continue
                finished = HarnessError(f"the worker evaluating {_label(jobs[key])} died {tries[key]} times",
                                        "check the workers' memory and logs (ray logs), then run it again")
            except RayTaskError as exc:
                idle.append(actor)
                text = (str(exc.cause or exc).strip().splitlines() or ["error"])[-1][:300]
                finished = HarnessError(f"the worker failed on {_label(jobs[key])}: {text}", "run it with --workers 1")
            else:
                idle.append(actor)
            yield key, finished

    def _replace(self) -> Any:
        actor = self.remote.remote(*self.args)
        self.actors.append(actor)
        return actor

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def _label(job: Job) -> str:
    tasks = job.tasks
    return f"{job.target.path or job.target.name} ({tasks[0]}{f' + {len(tasks) - 1} tasks' if len(tasks) > 1 else ''})"
