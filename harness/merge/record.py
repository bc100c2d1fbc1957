"""Writing a finished merge into the store: model, recipe, lineage edges, and a user's selection.

Reading lineage back is the store's (ancestors, descendants, depth, roots, lineage_tree)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.identity import files_signature
from harness.merge.resolve import MergePlan

if TYPE_CHECKING:
    from harness.store import Store


def record_merge(store: Store, plan: MergePlan, folder: Path, name: str | None) -> None:
    """Parents (as sources if new), the recipe, the merged model and one edge per parent: one transaction."""
    with store.writing():
        _record_merge(store, plan, folder, name)


def _record_merge(store: Store, plan: MergePlan, folder: Path, name: str | None) -> None:
    from harness.merge.checks import safetensors_shapes
    from harness.store import LineageEdge, ModelRecord

    for p in plan.parents:
        if not p.known and store.find_model(p.model_id) is None:
            store.add_model(ModelRecord(model_id=p.model_id, name=store.free_name(Path(p.path).name, p.model_id),
                                        path=p.path, kind="source", source=p.path, meta={"files_sig": p.files_sig}))
    store.add_recipe(plan.recipe_id, plan.method, plan.normalised_yaml())
    import json

    config = json.loads((folder / "config.json").read_text())
    n_params = 0
    for shape in safetensors_shapes(folder).values():
        count = 1
        for d in shape:
            count *= d
        n_params += count
    store.add_model(ModelRecord(
        model_id=plan.model_id, name=name, path=str(folder), kind="merge", source="merge",
        architecture=(config.get("architectures") or [None])[0], n_params=n_params, recipe_id=plan.recipe_id,
        meta={"files_sig": files_signature(folder), "seed": plan.seed, "mergekit": plan.mergekit_version,
              "method": plan.method, "recipe_file": str(plan.recipe.path) if plan.recipe.path else None},
    ))
    store.add_lineage([
        LineageEdge(child_id=plan.model_id, parent_id=p.model_id, role=p.role, weight=p.weight, params=p.params)
        for p in plan.parents
    ])


def record_selection(store: Store, model_id: str, suite_split: str, note: str | None = None) -> None:
    """A user's declaration that this model was chosen on SUITE[:SPLIT] (its scores there are in-sample)."""
    suite, _, split = suite_split.partition(":")
    store.select(model_id, suite, "user", split=split or None, note=note)
