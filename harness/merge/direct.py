"""mergekit's planned merge, run task by task without its scheduler, for search loops on the CPU.

A search merges the same parents with new parameters hundreds of times. mergekit's Executor builds a task universe
and a schedule (a networkx topological sort over pydantic-hashed tasks) for every merge: for a 38-tensor model that
is most of the merge's time. Here each output tensor is computed by calling the planned tasks' own `execute`
(mergekit's merge-method code, on mergekit's own inputs), in the planner's order, and the gathered parent tensors
(GatherTensors of LoadTensors: they depend on the parents only, and hold the tensor cache's own tensors, no copies)
are kept across candidates.

Only where the order of execution cannot matter: deterministic methods (`DETERMINISTIC`) on the CPU, with graphs
made of loads, gathers and merge-method tasks. Anything else (DARE's random masks, drawn in the schedule's order;
tokenizer merges; an accelerator) returns None from `run_planned`, and the caller runs mergekit's Executor.
tests/test_merge_direct.py compares every tensor with mergekit's own output for each method here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DETERMINISTIC = frozenset({"linear", "task_arithmetic", "ties", "slerp"})  # no random draw in mergekit 0.1.5


@dataclass
class DirectRunner:
    """Runs planned targets directly; `load` gives a LoadTensor's value (the merger's tensor cache)."""

    load: Callable[[Any], torch.Tensor | None]
    gathered: dict[Any, Any] = field(default_factory=dict)  # a GatherTensors' content -> its value, across candidates
    runs: int = 0  # merges run here (tests check the fast path was taken)

    def run_planned(self, targets: list[Any], device: str) -> list[Any] | None:
        """Each target's value, in order; None when this graph must go through mergekit's Executor."""
        if not self.supports(targets, device):
            return None
        values = [t.execute(tensors=self.inputs(t.gather_tensors)) for t in targets]
        self.runs += 1
        return values

    def supports(self, targets: list[Any], device: str) -> bool:
        return device == "cpu" and all(self._supported(t) for t in targets)

    def _supported(self, task: Any) -> bool:
        from mergekit.io.tasks import GatherTensors
        from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

        return (isinstance(task, ExecuteMergeMethodTask) and task.method_name in DETERMINISTIC
                and type(task.gather_tensors) is GatherTensors)

    def inputs(self, gather: Any) -> Any:
        """A GatherTensors' value (parent tensors by model), computed once per content."""
        # by content: mergekit's ImmutableMap compares by identity, and each plan builds new ones
        key = (tuple(gather.weight_info.items()), gather.dtype, gather.device)
        if key not in self.gathered:
            loads = gather.arguments()
            self.gathered[key] = gather.execute(**{k: self.load(t) for k, t in loads.items()})
        return self.gathered[key]
