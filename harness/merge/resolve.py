"""From a recipe to a merge plan: model references located, parents hashed, the merge's content id computed.

A reference is tried as a recipe file (a merge of merges, made first), a model folder or a .gguf file (converted
once into a cached folder; relative to the recipe, then the cwd), then a name, id or id prefix in the store. The
id of a merge is a hash of the normalised recipe (references replaced by the parents' ids, files named in
parameters by their hashes), the parents' ids, the mergekit version and the seed; for a recipe whose methods draw
random numbers (RANDOM_METHODS) also torch's release and the device kind when not the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, did_you_mean
from harness.hashing import hash_json, sha256_file
from harness.identity import files_signature, model_id, prefetch_ids
from harness.merge.recipe import Recipe, is_recipe_file, ref_slots, ref_text

if TYPE_CHECKING:
    from harness.store import ModelRecord, Store

ID_FORMAT = 1  # bump when the way ids are computed changes
# mergekit methods that draw random numbers on the math device (mergekit 0.1.5: DARE's bernoulli masks, DELLA's
# magnitude-weighted ones, arcee_fusion's quantile sample of a tensor over 1M values): CUDA's draws are not the CPU's
RANDOM_METHODS = frozenset({"dare_ties", "dare_linear", "della", "della_linear", "arcee_fusion"})


@dataclass(frozen=True)
class Parent:
    """A model a merge reads: where it is and what it is."""

    ref: str  # as written in the recipe
    path: str  # absolute folder
    model_id: str
    role: str  # base | source | tokenizer
    name: str | None = None
    files_sig: str | None = None
    known: bool = False  # already in the store
    params: dict[str, Any] = field(default_factory=dict)
    weight: float | None = None


@dataclass(frozen=True)
class MergePlan:
    recipe: Recipe
    config_data: dict[str, Any]  # the recipe for mergekit: references as absolute paths
    normalised: dict[str, Any]  # the recipe with references as parent ids (what the id hashes)
    parents: tuple[Parent, ...]
    model_id: str
    recipe_id: str
    seed: int | None
    mergekit_version: str

    @property
    def method(self) -> str:
        return self.recipe.method

    def normalised_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.normalised, sort_keys=True)

    def config(self) -> Any:
        """mergekit's MergeConfiguration (validated; errors name the field)."""
        return to_merge_config(self.config_data)

    def validate(self) -> None:
        """The checks that need mergekit: a registered method and a config mergekit accepts."""
        from harness.merge.recipe import check_keys, check_method

        check_method(self.config_data)
        check_keys(self.config_data)
        self.config()


def canonical(node: Any, in_parameters: bool = False) -> Any:
    """The recipe in one spelling: no nulls, numbers inside parameters as floats (1 == 1.0), refs as strings.
    Key order does not matter (ids hash with sorted keys)."""
    if isinstance(node, dict):
        return {str(k): canonical(v, in_parameters or k == "parameters") for k, v in node.items() if v is not None}
    if isinstance(node, list | tuple):
        return [canonical(v, in_parameters) for v in node]
    if in_parameters and isinstance(node, int) and not isinstance(node, bool):
        return float(node)
    return node


def to_merge_config(data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from harness.merge.ordered import OrderedMergeConfiguration  # its models in recipe order, whatever the hash seed

    try:
        return OrderedMergeConfiguration.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise HarnessError(f"recipe field {where}: {err['msg']}", "fix the recipe (see docs/merge.md)") from exc
    except RuntimeError as exc:
        raise HarnessError(f"recipe: {exc}", "fix the recipe (see docs/merge.md)") from exc


Materialize = Callable[[Path], tuple[str, str]]  # sub-recipe file -> (folder, model id)


@dataclass
class Resolver:
    """Turns references into parents. Keeps the hashes it computed, so a search loop hashes each parent once."""

    store: Store | None = None
    materialize: Materialize | None = None
    hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    known: dict[tuple[str, str], bool] = field(default_factory=dict)
    names: dict[str, tuple[str | None, str, str | None, str, str | None]] = field(default_factory=dict)
    stack: tuple[Path, ...] = ()  # recipe files being made, outermost first (to refuse cycles)

    def locate(self, ref: str, base_dir: Path) -> tuple[Path, str | None, str | None]:
        """(folder, model id if already known, name) for one reference."""
        sub = is_recipe_file(ref, base_dir)
        if sub is not None:
            if sub in self.stack:
                raise HarnessError(f"recipe {sub} refers to itself through {ref!r}", "break the cycle")
            if self.materialize is None:
                raise HarnessError(f"{ref!r} is a recipe; merging it needs a store", "pass store=")
            folder, mid = self.materialize(sub)
            return Path(folder), mid, sub.stem
        for candidate in (base_dir / ref, Path(ref)):
            if candidate.is_dir():
                return candidate.resolve(), None, None
            if candidate.is_file() and candidate.suffix.lower() == ".gguf":
                return self._gguf(candidate)
        if self.store is not None:
            if ref not in self.names:  # remembered for this resolver's life (a search loop asks again and again)
                rec = self.store.find_model(ref)
                if rec is not None:
                    self.names[ref] = (rec.path, rec.model_id, rec.name, rec.kind, rec.meta.get("files_sig"))
            if ref in self.names:
                path, mid, name, kind, sig = self.names[ref]
                if not path or not Path(path).is_dir():
                    raise HarnessError(f"model {ref!r} is in the store but its folder {path} is gone",
                                       "merge or download it again")
                return Path(path), mid if _still(Path(path), kind, sig) else None, name
        names = list(self.store.aliases()) if self.store is not None else []
        raise HarnessError(
            f"no model {ref!r}: not a folder, a recipe file or a name in the store{did_you_mean(ref, names)}",
            "pass a model folder, a recipe .yaml, or a name from `harness models` (no hub downloads)",
        )

    def _gguf(self, path: Path) -> tuple[Path, str | None, str | None]:
        """A GGUF parent: its cached safetensors conversion (registered when there is a store)."""
        if self.store is None:
            from harness.models.gguf import ensure_folder

            return ensure_folder(path)[0], None, path.stem
        from harness.models.importer import import_gguf

        rec = import_gguf(path, self.store)
        return Path(str(rec.path)), rec.model_id, rec.name

    def identify(self, folder: Path, known_id: str | None) -> tuple[str, str, bool]:
        """(model id, files signature, in store) for a folder: the store's id if unchanged, else its hash."""
        sig = files_signature(folder)
        if known_id:
            return known_id, sig, True
        key = (str(folder), sig)
        if key not in self.hashes:
            rec = self.store.find_model(str(folder)) if self.store is not None else None
            if rec is not None and rec.meta.get("files_sig") == sig:
                self.hashes[key] = rec.model_id
            else:
                moved = stored_model(self.store, folder, sig) if self.store is not None else None
                self.hashes[key] = moved.model_id if moved is not None else model_id(folder, sig)
        if key not in self.known:
            self.known[key] = self.store is not None and self.store.find_model(self.hashes[key]) is not None
        return self.hashes[key], sig, self.known[key]


def _still(folder: Path, kind: str, recorded_sig: str | None) -> bool:
    """Whether a store record's id still stands for its folder. A source's id is its content, so a source is always
    re-identified (`Resolver.identify`: its content hash, memoised per files signature, so edited in place it is a
    new id, as evaluate.target does); a merge's or zoo model's id holds while its files' signature is the recorded
    one (or none was recorded)."""
    return kind != "source" and (not recorded_sig or files_signature(folder) == recorded_sig)


def stored_model(store: Store, folder: Path, sig: str | None = None) -> ModelRecord | None:
    """The store's merge or zoo model for a folder (their ids are not what a folder's content hashes to): the one
    recorded at this path while its id still stands (`_still`), else the merge the folder's harness_merge.json
    names when the folder has the files signature recorded for it (names, sizes and mtimes: a merge folder moved
    with `mv` keeps them, an edited one does not). None: the folder is what it holds (its content hash). A moved
    merge had been hashed as a new source, without its lineage."""
    from harness.merge.engine import merge_record

    sig = sig or files_signature(folder)
    rec = store.find_model(str(folder))
    if rec is not None and rec.kind != "source" and rec.meta.get("files_sig") in (None, sig):
        return rec
    named = merge_record(folder).get("model_id")
    rec = store.find_model(named) if isinstance(named, str) and named else None
    if rec is None or rec.model_id != named or rec.kind == "source" or rec.meta.get("files_sig") != sig:
        return None
    return rec


def plan_merge(recipe: Recipe, resolver: Resolver, seed: int | None = 0, device: str = "cpu",
               version: Callable[[str], str] | None = None) -> MergePlan:
    """Locate every reference, compute ids, and build mergekit's config. Writes nothing, imports no mergekit.
    `device` and torch's version enter the id only where they change the tensors (`draws`): CPU ids do not hold
    the device, nor the ids of methods that draw no random numbers torch's version. `version`: what reads an
    installed package's version (importlib.metadata's by default)."""
    from importlib.metadata import version as installed

    from harness.merge.fisher import attach_fisher

    version = version or installed

    data = copy.deepcopy(recipe.data)
    if recipe.extras.get("fisher"):
        attach_fisher(data, recipe, resolver)
    config_data, normalised = copy.deepcopy(data), copy.deepcopy(data)
    found: dict[str, Parent] = {}
    located: dict[str, tuple[Path, str | None, str | None]] = {}
    for slot, key, _ in ref_slots(data):
        ref = ref_text(slot[key])
        if ref not in located:
            located[ref] = resolver.locate(ref, recipe.base_dir)
    prefetch_ids([folder for folder, known_id, _ in located.values() if not known_id])
    with resolver.store.reading() if resolver.store is not None else contextlib.nullcontext():  # one connection
        for (slot, key, role), (cslot, _, _), (nslot, _, _) in zip(
            ref_slots(data), ref_slots(config_data), ref_slots(normalised), strict=True
        ):
            ref = ref_text(slot[key])
            if ref not in found:
                folder, known_id, name = located[ref]
                mid, sig, known = resolver.identify(folder, known_id)
                found[ref] = Parent(ref=ref, path=str(folder), model_id=mid, role=role, name=name,
                                    files_sig=sig, known=known)
            cslot[key] = found[ref].path
            nslot[key] = "model:" + found[ref].model_id
    _hash_file_params(normalised, recipe.base_dir, config_data)
    norm = canonical(normalised)
    parents = _with_roles(found, data)
    mk = version("mergekit")
    what = {"format": ID_FORMAT, "recipe": norm, "parents": sorted(p.model_id for p in parents), "mergekit": mk,
            "seed": seed}
    if draws(data):  # torch's generator (and its kernels) may draw other numbers in another release
        what["torch"] = version("torch").partition("+")[0]
    drawn_on = draw_device(data, device)
    if drawn_on is not None:
        what["device"] = drawn_on
    model_id = hash_json(what)
    return MergePlan(recipe=recipe, config_data=config_data, normalised=norm, parents=parents,
                     model_id=model_id, recipe_id=hash_json(norm), seed=seed, mergekit_version=mk)


def draws(data: Any) -> bool:
    """Whether a method of the recipe (top level, slices or modules) draws random numbers (RANDOM_METHODS)."""

    def methods(node: Any) -> set[str]:
        if isinstance(node, dict):
            return {str(v) for k, v in node.items() if k == "merge_method"} | {
                m for v in node.values() for m in methods(v)}
        return {m for v in node for m in methods(v)} if isinstance(node, list) else set()

    return bool(methods(data) & RANDOM_METHODS)


def draw_device(data: Any, device: str) -> str | None:
    """The device kind ("cuda") a recipe's random draws are made on, when not the CPU and the recipe `draws`; else
    None (the id is the CPU's)."""
    kind = device.split(":")[0]
    return kind if kind != "cpu" and draws(data) else None


def _hash_file_params(normalised: dict[str, Any], base_dir: Path, config_data: dict[str, Any]) -> None:
    """Parameters naming files (e.g. fisher:) enter the id by content; mergekit gets absolute paths."""

    def walk(node: Any, twin: Any) -> None:
        if isinstance(node, dict):
            for k in node:
                if isinstance(node[k], str) and k not in ("model", "base_model", "merge_method"):
                    p = base_dir / node[k]
                    if node[k].endswith(".safetensors") and p.is_file():
                        node[k] = "file:" + sha256_file(p).hexdigest()
                        twin[k] = str(p.resolve())
                else:
                    walk(node[k], twin[k])
        elif isinstance(node, list):
            for a, b in zip(node, twin, strict=True):
                walk(a, b)

    walk(normalised, config_data)


def _with_roles(found: dict[str, Parent], data: dict[str, Any]) -> tuple[Parent, ...]:
    """One parent per model: role base wins over source over tokenizer; per-model parameters attached."""
    rank = {"base": 0, "source": 1, "tokenizer": 2}
    roles: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    for slot, key, role in ref_slots(data):
        ref = ref_text(slot[key])
        if ref not in roles or rank[role] < rank[roles[ref]]:
            roles[ref] = role
        p = params.setdefault(ref, {})
        if slot.get("parameters"):
            p.update(slot["parameters"])
        if slot.get("layer_range"):
            p.setdefault("layer_ranges", []).append(list(slot["layer_range"]))
    out = []
    for ref, parent in found.items():
        p = json.loads(json.dumps(params.get(ref, {}), default=str))
        w = p.get("weight")
        weight = float(w) if isinstance(w, int | float) and not isinstance(w, bool) else None
        out.append(Parent(**{**parent.__dict__, "role": roles[ref], "params": {"method": data["merge_method"], **p},
                             "weight": weight}))
    return tuple(out)
