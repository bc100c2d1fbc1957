"""What `harness eval MODEL` can point at: a model folder, a GGUF file, a name or id in the store, or (with --backend
openai --base-url) a model served elsewhere. A merge recipe YAML is merged first by harness.workflows.evaluate."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness import identity
from harness.errors import HarnessError
from harness.evaluate.backends.base import ModelTarget
from harness.hashing import hash_json
from harness.identity import memo
from harness.merge.resolve import stored_model

if TYPE_CHECKING:
    from harness.store import Store


def check_finite_weights(target: ModelTarget) -> None:
    """Refuse a model whose weights hold NaN/inf (every answer would be NaN and the score plausible-looking
    nonsense). Read once per model id, then remembered under results/cache/finite_weights.json."""
    from harness.weights import folder_nonfinite

    if target.path is None or memo("finite_weights").get(target.model_id):
        return
    bad = folder_nonfinite(target.path)
    if bad is not None:
        raise HarnessError(f"model {target.name} has {bad[1]} NaN/inf weights in {bad[0]}",
                           "fix or re-export the model; a model with non-finite weights cannot be scored")
    memo("finite_weights", target.model_id, True)


def _register_folder(store: Store, path: Path, model_id: str) -> str:
    """Add a folder evaluated for the first time to the store as a source model; returns its display name."""
    from harness.store import ModelRecord

    with store.reading():
        existing = store.find_model(model_id)
        name = store.free_name(path.name, model_id)
    if existing is not None:
        return existing.name or path.name
    arch = None
    try:
        arch = (json.loads((path / "config.json").read_text()).get("architectures") or [None])[0]
    except (OSError, ValueError):
        pass
    store.add_model(ModelRecord(model_id=model_id, name=name, path=str(path), kind="source",
                                source=str(path), architecture=arch))
    return name


def resolve_model(ref: str, store: Store, base_url: str | None = None) -> ModelTarget:
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        raise HarnessError(f"{ref} is a merge recipe, not a model",
                           f"merge it first (harness merge {ref}), or pass it to harness eval, which merges it")
    if path.is_file() and path.suffix.lower() == ".gguf":  # converted once into a cached folder, registered
        from harness.models.importer import import_gguf

        rec = import_gguf(path, store)
        return ModelTarget(rec.model_id, Path(str(rec.path)), rec.name or path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise HarnessError(f"{ref} is not a model folder (no config.json)",
                               "pass a folder saved with save_pretrained, a .gguf file, a registered name, "
                               "or a recipe YAML")
        path = path.resolve()
        known = stored_model(store, path)  # a merge or zoo model keeps the id the store gave it, moved too
        if known is not None:
            if known.path != str(path) and not Path(str(known.path)).is_dir():  # moved: its record follows it
                store.add_model(dataclasses.replace(known, path=str(path)))
            return ModelTarget(known.model_id, path, known.name or path.name)
        model_id = identity.model_id(path)  # a source folder is what it holds now (edited in place: a new model)
        return ModelTarget(model_id, path, _register_folder(store, path, model_id))
    rec = store.find_model(ref)
    if rec is not None:
        if not rec.path or not Path(rec.path).is_dir():
            raise HarnessError(f"model {ref!r} is registered but has no folder on disk",
                               "materialize it again (re-run its merge) or pass a folder")
        return ModelTarget(rec.model_id, Path(rec.path), rec.name or ref)
    if base_url:  # a model only the endpoint knows
        return ModelTarget(hash_json({"endpoint": base_url, "model": ref}), None, ref)
    if os.sep in ref or ref.startswith("."):
        raise HarnessError(f"no model folder at {ref}", "check the path")
    store.get_model(ref)  # raises with "did you mean"
    raise AssertionError("unreachable")
