"""Registering a built zoo in the store: one model row per member, lineage to zoo-base, and zoo-overfit's
train selection (it was fine-tuned on zoo_math:public, so its scores there are in-sample)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.hashing import hash_model_dir
from harness.zoo.family import member

if TYPE_CHECKING:
    from harness.store import Store
    from harness.zoo.build import BuiltModel


def register_zoo(built: list[BuiltModel], store: Store | None = None) -> dict[str, str]:
    """Add the members to the store (idempotent); returns name -> model id (the content hash)."""
    from harness.store import LineageEdge, ModelRecord, Store

    store = store or Store()
    store.init()
    ids = {b.name: hash_model_dir(b.path) for b in built}
    for b in built:
        m = member(b.name)
        meta = {"recipe_hash": b.recipe_hash, "trains": m.trains, "data": m.data, "steps": m.schedule.steps,
                "zoo": True}
        store.add_model(ModelRecord(ids[b.name], b.name, str(b.path.resolve()), "zoo", source="harness zoo build",
                                    architecture="LlamaForCausalLM", n_params=b.n_params, meta=meta))
        if m.parent and m.parent in ids:
            store.add_lineage([LineageEdge(ids[b.name], ids[m.parent], "finetuned_from",
                                           params={"trains": m.trains})])
        if m.data.startswith("suite:"):
            _, suite, split = m.data.split(":")
            store.select(ids[b.name], suite, "train", split=split, process_id=b.recipe_hash,
                         note=f"{b.name} was fine-tuned on {suite}:{split} (deliberate overfit)")
    return ids
