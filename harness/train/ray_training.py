"""Fine-tunes fanned out over Ray: one sub-model per worker (one GPU each when the cluster has them).

    results = train_all(tasks, workers=4, address=None)   # FinetuneResult per task, in the tasks' order

Each task is `finetune`'s arguments. Every result is a folder written atomically and keyed by what decides its
weights, so a worker that dies leaves a finished model or none, and a re-run trains only what is missing. The
process that called `train_all` registers the results: workers never touch the store. With workers <= 1 the
tasks run here, one after another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.train.finetune import FinetuneParams, FinetuneResult, finetune
from harness.train.instructions import Example


@dataclass(frozen=True)
class TrainTask:
    base_dir: Path
    base_id: str
    examples: list[Example]
    params: FinetuneParams
    out: Path
    meta: dict[str, Any]
    threads: int = 1


def run_task(task: TrainTask) -> FinetuneResult:
    import torch

    torch.set_num_threads(task.threads)
    return finetune(task.base_dir, task.base_id, task.examples, task.params, task.out, task.meta)


def train_all(tasks: list[TrainTask], workers: int = 1, address: str | None = None,
              done: Callable[[int, TrainTask, FinetuneResult], None] | None = None) -> list[FinetuneResult]:
    """Every task's result, in order; `done(i, task, result)` is called here as each one finishes."""
    report = done or (lambda i, t, r: None)
    if workers <= 1:
        results = []
        for i, task in enumerate(tasks):
            results.append(run_task(task))
            report(i, task, results[-1])
        return results
    ray = _ray(address)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=1)(run_task)
    pending: dict[Any, int] = {}
    results: dict[int, FinetuneResult] = {}
    queue = list(enumerate(tasks))
    while queue or pending:
        while queue and len(pending) < workers:
            i, task = queue.pop(0)
            pending[remote.remote(task)] = i
        ready, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready[0])
        results[i] = _get(ray, ready[0])
        report(i, tasks[i], results[i])
    return [results[i] for i in range(len(tasks))]


def _ray(address: str | None) -> Any:
    from harness.cluster import connect_ray

    return connect_ray(address, "train.workers > 1", "set train.workers: 1")


def _get(ray: Any, ref: Any) -> FinetuneResult:
    """The result, or the worker's HarnessError as itself (a diverged loss keeps its one line)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, HarnessError):
            raise HarnessError(cause.problem, cause.fix, exit_code=cause.exit_code) from None
        raise
