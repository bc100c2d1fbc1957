"""What `harness eval MODEL` can point at: a model folder, a GGUF file, a name or id in the store, a merge recipe
YAML, or (with --backend openai --base-url) a model served elsewhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evaluate.backends.base import ModelTarget
from harness.hashing import hash_json, hash_model_dir
from harness.paths import cache_dir

if TYPE_CHECKING:
    from harness.store import Store


def _fingerprint(path: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())


def memo(name: str, key: str | None = None, value: Any = None) -> dict[str, Any]:
    """A small JSON memo under results/cache/<name>.json: read it, or add key -> value (atomically)."""
    path = cache_dir() / f"{name}.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key is not None:
        known[key] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)
    return known


def model_hash(path: Path) -> str:
    """The folder's content hash, remembered per (file names, sizes, mtimes) so big models hash once."""
    key = hash_json([str(path.resolve()), _fingerprint(path)])
    digest = memo("model_hashes").get(key)
    if digest is None:
        digest = hash_model_dir(path)
        memo("model_hashes", key, digest)
    return digest


def _register_folder(store: Store, path: Path, model_id: str) -> str:
    """Add a folder evaluated for the first time to the store as a source model; returns its display name."""
    from harness.store import ModelRecord

    with store.reading():
        existing = store.find_model(model_id)
        taken = store.aliases().get(path.name)
    if existing is not None:
        return existing.name or path.name
    name = path.name if taken in (None, model_id) else f"{path.name}-{model_id[:8]}"
    arch = None
    try:
        arch = (json.loads((path / "config.json").read_text()).get("architectures") or [None])[0]
    except (OSError, ValueError):
        pass
    store.add_model(ModelRecord(model_id=model_id, name=name, path=str(path), kind="source",
                                source=str(path), architecture=arch))
    return name


def _merge_recipe(path: Path, store: Store) -> ModelTarget:
    try:
        from harness.merge import merge_to_folder
    except ImportError:
        raise HarnessError(f"{path} is a merge recipe, but this checkout has no harness.merge",
                           "merge it with mergekit first and pass the output folder") from None
    result = merge_to_folder(path, store=store)
    rec = store.find_model(result.model_id)
    return ModelTarget(result.model_id, Path(result.path), (rec.name if rec else None) or Path(result.path).name)


def resolve_model(ref: str, store: Store, base_url: str | None = None) -> ModelTarget:
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return _merge_recipe(path, store)
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
        known = store.find_model(str(path))  # a merge or zoo model keeps the id the store gave it
        if known is not None:
            return ModelTarget(known.model_id, path, known.name or path.name)
        model_id = model_hash(path)
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
