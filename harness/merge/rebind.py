"""A search's merges planned once per recipe shape; each candidate's parameter values bound into the planned tasks.

An evolve search merges the same parents in one recipe shape hundreds of times; only the floats under `parameters`
change. mergekit's planner resolves every tensor's parameters through their filters for every merge (a third of a
zoo candidate's merge), and the direct path then hashes and compares its pydantic tasks (harness.merge.direct).

Here a shape is planned once more, with a distinct sentinel float in each parameter slot: every value a planned
task holds is then either a slot's sentinel (a candidate's value goes there) or a constant (a method default). A
candidate of a known shape takes the planned tasks with its values put in (pydantic's model_copy: no validation,
no planning) and runs them with mergekit's own `execute` on the gathered parent tensors, in the planner's order.
Its models are named by mergekit's own string for them (`str(ModelReference)`, GatherTensors' key) rather than the
pydantic ModelReference, whose hash and == the method code calls about thirty times per tensor. The first
candidate of a shape is also planned by mergekit as before, and its re-bound tasks must equal those, field for
field; if they do not, the shape is planned per candidate for the merger's life.

Slots: floats given as a parameter's value or as a condition's value ({filter, value}). The planner interpolates a
gradient (a list of numbers) between its values, so a recipe with one is planned per candidate, as are recipes the
direct path does not take (random methods, tokenizer merges, an accelerator), `fisher:` recipes and recipes that
name another recipe file. tests/test_merge_direct.py compares every tensor with mergekit's run_merge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.merge.recipe import Recipe, is_recipe_file, ref_slots, ref_text

if TYPE_CHECKING:
    import torch

SLOT = "\x00slot"
SENTINEL_STEP = 2.0**-24  # sentinels 0.5 + (k + 1) * step: exact, distinct, valid for every float parameter


class _Gradient(Exception):
    """A parameter holds a list of numbers: the planner interpolates it, so it has no slots."""


@dataclass(frozen=True)
class Slot:
    index: int


@dataclass(frozen=True)
class ShapeKey:
    """A recipe seen as its shape (the recipe with each slot's float replaced by a marker) and its slots' values."""

    shape: str
    names: tuple[str, ...]  # the parameter each slot belongs to
    values: tuple[float, ...]


def shape_key(rec: Recipe) -> ShapeKey | None:
    """The shape and values of a recipe whose merge can be re-bound; None when it must be planned each time."""
    if rec.extras.get("fisher") or any(is_recipe_file(ref_text(s[k]), rec.base_dir) for s, k, _ in ref_slots(rec.data)):
        return None
    names: list[str] = []
    values: list[float] = []

    def take(name: str, value: float) -> str:
        names.append(name)
        values.append(value)
        return SLOT

    try:
        shape = walk_slots(rec.data, take)
    except _Gradient:
        return None
    return ShapeKey(json.dumps([str(rec.base_dir), shape]), tuple(names), tuple(values))


def with_sentinels(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The recipe with slot k set to its sentinel (document order, as shape_key numbers them), and its slot count."""
    count = [0]

    def sentinel(_name: str, _value: float) -> float:
        count[0] += 1
        return 0.5 + count[0] * SENTINEL_STEP

    return walk_slots(data, sentinel), count[0]


def sentinel_slot(value: Any) -> int | None:
    if type(value) is not float or not 0.5 < value < 0.5 + 2.0**-4:
        return None
    k = (value - 0.5) / SENTINEL_STEP
    return int(k) - 1 if k == int(k) else None


def walk_slots(node: Any, put: Any, parameter: str | None = None) -> Any:
    """A copy of the recipe with each slot's float replaced by put(parameter name, value)."""
    if isinstance(node, dict):
        if parameter is not None:  # a condition: {filter, value}
            return {k: walk_slots(v, put, parameter) if k == "value" else v for k, v in node.items()}
        return {k: ({p: walk_slots(s, put, p) for p, s in v.items()} if k == "parameters" and isinstance(v, dict)
                    else walk_slots(v, put)) for k, v in node.items()}
    if isinstance(node, list):
        if parameter is not None and any(isinstance(v, int | float) and not isinstance(v, bool) for v in node):
            raise _Gradient
        return [walk_slots(v, put, parameter) for v in node]
    if parameter is not None and type(node) is float:
        return put(parameter, node)
    return node


@dataclass
class PlannedShape:
    """One shape's planned tasks, their models named by string, with each parameter value a Slot or a constant."""

    names: list[str]  # output tensor names
    dtypes: list[Any]  # the cast each output gets (torch dtype or None)
    tasks: list[Any]
    inputs: list[dict[str, torch.Tensor]]  # each task's gathered parent tensors
    shared: list[dict[str, Any]]
    per_input: list[dict[str, dict[str, Any]]]
    validate: list[Any]  # each slot's parameter validator (mergekit's, as the planner applies it)

    def run(self, values: tuple[float, ...]) -> dict[str, torch.Tensor]:
        vals = [check(v) for check, v in zip(self.validate, values, strict=True)]
        out = {}
        for name, dtype, task, inputs, shared, per_input in zip(
                self.names, self.dtypes, self.tasks, self.inputs, self.shared, self.per_input, strict=True):
            value = bind(task, vals, shared, per_input).execute(tensors=inputs)
            if value is not None:
                out[name] = value if dtype is None else value.to(dtype=dtype)
        return out


def bind(task: Any, values: list[Any], shared: dict[str, Any], per_input: dict[str, dict[str, Any]]) -> Any:
    Map = type(task.parameters)  # noqa: N806  (the planner's own immutable mapping: immutables.Map in 0.1.5)
    return task.model_copy(update={"parameters": Map(fill(shared, values)), "input_parameters": Map(
        {label: Map(fill(p, values)) for label, p in per_input.items()})})


def fill(pattern: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    return {k: values[v.index] if type(v) is Slot else v for k, v in pattern.items()}


def pattern(params: Any) -> dict[str, Any]:
    return {k: Slot(i) if (i := sentinel_slot(v)) is not None else v for k, v in params.items()}


@dataclass
class Rebinder:
    """The shapes a merger has planned, and those it must plan per candidate."""

    shapes: dict[str, PlannedShape] = field(default_factory=dict)
    unbindable: set[str] = field(default_factory=set)

    def learn(self, key: ShapeKey, method: str, real: list[tuple[Any, Any]], sentinel: list[tuple[Any, Any]],
              gathered: Any, out_dtype: str | None) -> PlannedShape | None:
        """The shape from its sentinel plan, kept if it gives back the real plan's tasks for the key's values."""
        from mergekit import merge_methods
        from mergekit.common import dtype_from_name

        specs = {p.name: p for p in merge_methods.get(method).spec.parameters}
        shape = None
        if len(real) == len(sentinel) and all(n in specs for n in key.names):
            shape = PlannedShape([], [], [], [], [], [], [specs[n].validate for n in key.names])
            for (weight, task), (_, planned) in zip(real, sentinel, strict=True):
                if not self._add(shape, key.values, task, planned, gathered):
                    shape = None
                    break
                shape.names.append(weight.name)
                shape.dtypes.append(dtype_from_name(weight.force_dtype or out_dtype))
        if shape is None:
            self.unbindable.add(key.shape)
        else:
            self.shapes[key.shape] = shape
        return shape

    @staticmethod
    def _add(shape: PlannedShape, values: tuple[float, ...], real: Any, planned: Any, gathered: Any) -> bool:
        refs = [*planned.model_order, *([planned.base_model] if planned.base_model is not None else [])]
        label = {ref: str(ref) for ref in refs}
        if len(set(label.values())) != len(label) or set(planned.input_parameters) - set(label):
            return False
        shared = pattern(planned.parameters)
        per_input = {label[ref]: pattern(p) for ref, p in planned.input_parameters.items()}
        task = planned.model_copy(update={"model_order": tuple(label[r] for r in planned.model_order),
                                          "base_model": label.get(planned.base_model)})
        if not same_task(bind(task, list(values), shared, per_input), real, label):
            return False
        shape.tasks.append(task)
        shape.inputs.append({label[ref]: t for ref, t in gathered(planned.gather_tensors).items()})
        shape.shared.append(shared)
        shape.per_input.append(per_input)
        return True


def same_task(bound: Any, real: Any, label: dict[Any, str]) -> bool:
    """Whether a re-bound task (models named by string) is the planner's task, field for field; the gathers by
    content (mergekit's ImmutableMap compares by identity)."""
    Map = type(real.input_parameters)  # noqa: N806
    try:
        relabeled = {"model_order": tuple(label[r] for r in real.model_order),
                     "base_model": None if real.base_model is None else label[real.base_model],
                     "input_parameters": Map({label[r]: p for r, p in real.input_parameters.items()})}
    except KeyError:  # a model the sentinel plan did not have
        return False
    for name in type(real).model_fields:
        if name == "gather_tensors":
            a, b = bound.gather_tensors, real.gather_tensors
            if type(a) is not type(b) or (dict(a.weight_info.items()), a.dtype, a.device) != (
                    dict(b.weight_info.items()), b.dtype, b.device):
                return False
        elif getattr(bound, name) != relabeled.get(name, getattr(real, name)):
            return False
    return True
