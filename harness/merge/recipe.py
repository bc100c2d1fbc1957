"""Recipes: mergekit YAML read safely, validated once, with every model reference located.

A recipe is mergekit's own YAML, accepted as is. harness adds one optional top-level key, `fisher:`
(see harness.merge.fisher), which is removed before mergekit sees the recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, did_you_mean

HARNESS_KEYS = ("fisher", "name")
KEYWORD_SOURCES = ("union", "base")


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: its data, its text, and the file it came from (relative references start there)."""

    data: dict[str, Any]
    source: str | dict[str, Any]  # the YAML text, or the mapping it was given as (a copy)
    path: Path | None = None
    name: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The recipe as YAML (a mapping is written out only when asked: a search loop never asks)."""
        import yaml

        return self.source if isinstance(self.source, str) else yaml.safe_dump(self.source, sort_keys=False)

    @property
    def method(self) -> str:
        return str(self.data["merge_method"])

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def is_recipe_file(ref: str, base_dir: Path) -> Path | None:
    """The recipe file a reference names (relative to the recipe's folder, then the cwd), else None."""
    if not ref.endswith((".yaml", ".yml")):
        return None
    for candidate in (base_dir / ref, Path(ref)):
        if candidate.is_file():
            return candidate.resolve()
    return None


def load_recipe(source: str | Path | dict[str, Any] | Recipe) -> Recipe:
    """Read a recipe from a file, YAML text or a dict; check its method and structure."""
    import yaml

    if isinstance(source, Recipe):
        return source
    path: Path | None = None
    text: str | dict[str, Any]
    if isinstance(source, dict):
        check_plain(source, "recipe")
        data, text = dict(source), copy.deepcopy(source)
    else:
        text, path = _read_text(source)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = f" in {path}" if path else ""
            raise HarnessError(f"recipe is not valid YAML{where} ({str(exc).splitlines()[0]})",
                               "fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise HarnessError("a recipe must be a YAML mapping with merge_method and models/slices",
                           "see docs/merge.md for examples")
    extras = {k: data.pop(k) for k in HARNESS_KEYS if k in data}
    check_structure(data)
    name = extras.get("name") or (path.stem if path else None)
    return Recipe(data=data, source=text, path=path, name=name, extras=extras)


PLAIN = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str) -> None:
    """A recipe given as a mapping holds only what YAML writes back (its card and mergekit_config.yml are YAML):
    mappings with string keys, lists, strings, numbers, booleans, null. Checked when it is loaded, not when the
    card is written after the merge."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise HarnessError(f"{where} has a key {key!r} that is not a string",
                                   "give recipe keys as strings")
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif type(value) not in PLAIN:  # exact: YAML's safe writer refuses subclasses (numpy.float64 is a float)
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        raise HarnessError(f"{where} is a {kind}, which a YAML recipe cannot hold",
                           "pass plain values (float(x), list(x), str(path)) in a recipe mapping")


def _read_text(source: str | Path) -> tuple[str, Path | None]:
    text = str(source)
    if isinstance(source, Path) or ("\n" not in text and text.endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.is_file():
            raise HarnessError(f"no recipe file {path}", "check the path")
        return path.read_text(encoding="utf-8"), path.resolve()
    return text, None


def check_structure(data: dict[str, Any]) -> None:
    """What can be checked without importing mergekit (the cache-hit path stays light)."""
    if not data.get("merge_method"):
        raise HarnessError("the recipe has no merge_method", "add e.g. `merge_method: linear`")
    if sum(bool(data.get(k)) for k in ("models", "slices", "modules")) != 1:
        raise HarnessError("a recipe needs exactly one of models:, slices: or modules:",
                           "see mergekit's examples or docs/merge.md")


def check_method(data: dict[str, Any]) -> None:
    """The method must be in mergekit's registry (with harness's methods added)."""
    from harness.merge.methods import method_names

    method = str(data.get("merge_method"))
    names = method_names()
    if method not in names:
        raise HarnessError(f"unknown merge method {method!r}{did_you_mean(method, names)}",
                           "pick one of: " + ", ".join(sorted(names)))


def check_keys(data: dict[str, Any]) -> None:
    """Keys mergekit would ignore without a word (its config models allow extra keys): the recipe's own, each model
    entry's, slice's, source's and module's, and the parameter names, which must be the method's (their values too:
    check_setting)."""
    from mergekit import config as mc
    from mergekit import merge_methods

    specs = {p.name: p for p in merge_methods.get(str(data["merge_method"])).spec.parameters}
    params = list(specs)

    def check(node: Any, allowed: Any, where: str) -> None:
        if not isinstance(node, dict):
            return  # mergekit's validation names a wrong shape
        for key in node:
            if key not in allowed.model_fields:
                close = did_you_mean(str(key), list(allowed.model_fields))
                raise HarnessError(f"{where} has an unknown key {key!r}{close}",
                                   "fix the key (mergekit would ignore it); see docs/merge.md")
        for name, setting in (node.get("parameters") or {}).items():
            if name not in params:
                raise HarnessError(f"{where}: {data['merge_method']} has no parameter {name!r}"
                                   f"{did_you_mean(str(name), params)}", "use one of: " + ", ".join(params))
            model = f" ({node['model']})" if isinstance(node.get("model"), str) else ""
            check_setting(specs[name], setting, f"{where}{model}")
        for i, m in enumerate(node.get("models") or []):
            check(m, mc.InputModelDefinition, f"{where} models[{i}]")
        for i, s in enumerate(node.get("slices") or []):
            check(s, mc.OutputSliceDefinition, f"{where} slices[{i}]")
        for i, src in enumerate(node.get("sources") or []):
            check(src, mc.InputSliceDefinition, f"{where} sources[{i}]")

    check(data, mc.MergeConfiguration, "the recipe")
    for name, module in (data.get("modules") or {}).items():
        check(module, mc.OutputModuleDefinition, f"the recipe module {name!r}")


def check_setting(spec: Any, setting: Any, where: str) -> None:
    """Every value of a parameter setting (a value, a gradient list, {filter, value} conditions) through the method's
    own validator, as mergekit checks it tensor by tensor mid-merge: a wrong one names its parameter and model here,
    where mergekit's says only "1 validation error for float"."""
    if isinstance(setting, dict):
        return check_setting(spec, setting.get("value"), where)
    if isinstance(setting, list):
        for item in setting:
            check_setting(spec, item, where)
        return None
    try:
        spec.validate(setting)
    except ValueError:  # pydantic's ValidationError
        kind = getattr(spec.value_type, "__name__", str(spec.value_type))
        raise HarnessError(f"{where}: parameter {spec.name!r} is {setting!r}, not a {kind}",
                           f"give {spec.name} a {kind} (or a list of them for a gradient)") from None
    return None


def ref_slots(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Every place a recipe names a model: (mapping, key, role), in document order."""
    if data.get("base_model"):
        yield data, "base_model", "base"
    yield from _input_slots(data)
    for module in (data.get("modules") or {}).values():
        yield from _input_slots(module)
    tok = data.get("tokenizer") or {}
    if isinstance(tok, dict) and isinstance(tok.get("source"), str) and tok["source"] not in KEYWORD_SOURCES:
        yield tok, "source", "tokenizer"
    src = data.get("tokenizer_source")
    if isinstance(src, str) and src not in KEYWORD_SOURCES:
        yield data, "tokenizer_source", "tokenizer"


def _input_slots(block: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    for m in block.get("models") or []:
        yield m, "model", "source"
    for s in block.get("slices") or []:
        if s.get("base_model"):
            yield s, "base_model", "base"
        for src in s.get("sources") or []:
            yield src, "model", "source"


def ref_text(value: Any) -> str:
    """The string of a model reference (mergekit also accepts {model: {path: ...}})."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("model", value.get("path"))
        if value.get("lora"):
            raise HarnessError("LoRA references in recipes are not supported by harness yet",
                               "merge the adapter into its base model first")
        return ref_text(inner)
    raise HarnessError(f"cannot read the model reference {value!r}", "write `model: <path or name>`")
