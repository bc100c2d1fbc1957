"""Merging models: mergekit recipes in, content-addressed HF folders (or in-memory state dicts) out.

    from harness.merge import merge_to_folder, InMemoryMerger
    result = merge_to_folder("recipe.yaml")          # MergeResult(model_id, path, parents, cached, ...)
    tensors = InMemoryMerger().merge("recipe.yaml")  # dict[str, torch.Tensor], same tensors as the folder

mergekit does the merging (every method in its registry, plus ours in `harness.merge.methods`); this package
resolves model references, checks inputs, names results by content, writes folders atomically and records
lineage in the store. Importing it does not import torch or mergekit, nor its own modules: each name below is
imported on first use, so `harness merge`'s answers index (harness/cli/answers.py) reads harness.merge.checks
alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.merge.engine import MergeResult, merge_to_folder
    from harness.merge.memory import InMemoryMerger, TensorCache
    from harness.merge.recipe import Recipe, load_recipe
    from harness.merge.resolve import MergePlan, Parent, plan_merge

HOMES = {
    "MergeResult": "engine", "merge_to_folder": "engine", "InMemoryMerger": "memory", "TensorCache": "memory",
    "Recipe": "recipe", "load_recipe": "recipe", "MergePlan": "resolve", "Parent": "resolve", "plan_merge": "resolve",
}

__all__ = [
    "InMemoryMerger", "MergePlan", "MergeResult", "Parent", "Recipe", "TensorCache", "load_recipe",
    "merge_to_folder", "plan_merge",
]


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'harness.merge' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.merge.{HOMES[name]}"), name)
