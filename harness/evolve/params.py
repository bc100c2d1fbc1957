"""The searched space: a point of the unit cube <-> merge parameters <-> a mergekit recipe.

CMA-ES searches x in [0, 1]^d. Each coordinate is one parameter (weight, density or t) of one source model for
one group of tensors. Groups by granularity:

- global: one group (every tensor);
- layer_groups: `layer_groups` contiguous blocks of decoder layers, plus an `io` group (embeddings, final norm,
  head: every tensor outside `layers.N.`);
- layer: one group per decoder layer, plus `io`.

Per-group values become mergekit conditional parameters: `[{filter: "layers.0.", value: ...}, ..., {value: io}]`
(mergekit takes the first filter that is a substring of the tensor name; the last entry, with no filter, catches the
rest), so every method and architecture mergekit knows works without slices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.evolve.config import EvolveConfig

DECIMALS = 6  # parameters are rounded in recipes so that ids are stable and recipes readable


def num_layers(folder: str | Path, fix: str = "use granularity: global for this model") -> int:
    cfg_file = Path(folder) / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {cfg_file} ({exc})", "point base/sources at model folders") from None
    n = (cfg.get("num_hidden_layers") or cfg.get("n_layer")  # n_layer: GPT-2's config
         or (cfg.get("text_config") or {}).get("num_hidden_layers"))
    if not n:
        raise HarnessError(f"{cfg_file} has no num_hidden_layers", fix)
    return int(n)


def check_layer_names(folder: str | Path, n_layers: int, granularity: str) -> None:
    """Per-layer values reach a tensor through a filter 'layers.N.' in its name (Space.setting): refuse a per-layer
    granularity for a model whose decoder layers are named otherwise (GPT-2's and Falcon's 'transformer.h.N.'),
    where every tensor would silently take the io group's value."""
    from harness.merge.checks import safetensors_shapes

    if granularity == "global":
        return
    names = list(safetensors_shapes(Path(folder)))
    missing = [i for i in range(n_layers) if not any(f"layers.{i}." in k for k in names)]
    if names and missing:
        example = next((k for k in names if f".{missing[0]}." in k), names[0])
        raise HarnessError(f"granularity {granularity} sets values per decoder layer through tensor names holding "
                           f"'layers.N.', and {folder} has none for layer {missing[0]} (e.g. {example})",
                           "use granularity: global for this model")


def layer_groups(n_layers: int, granularity: str, k: int) -> list[list[int]]:
    """Decoder layer indices per group (the io group is implicit); [] for global."""
    if granularity == "global":
        return []
    if granularity == "layer":
        return [[i] for i in range(n_layers)]
    if k > n_layers:
        raise HarnessError(f"layer_groups: {k} is more than the model's {n_layers} layers",
                           f"use at most {n_layers}, or granularity: layer")
    bounds = [round(g * n_layers / k) for g in range(k + 1)]
    return [list(range(bounds[g], bounds[g + 1])) for g in range(k)]


@dataclass(frozen=True)
class Space:
    cfg: EvolveConfig
    sources: tuple[str, ...]  # references as they go into recipes (absolute folders or store names)
    base: str | None
    groups: tuple[tuple[int, ...], ...]

    @classmethod
    def build(cls, cfg: EvolveConfig, sources: list[str], base: str | None, n_layers: int) -> Space:
        groups = tuple(tuple(g) for g in layer_groups(n_layers, cfg.granularity, cfg.layer_groups))
        return cls(cfg, tuple(sources), base, groups)

    @property
    def group_names(self) -> list[str]:
        if not self.groups:
            return ["all"]
        return [f"layers{g[0]}-{g[-1]}" if len(g) > 1 else f"layer{g[0]}" for g in self.groups] + ["io"]

    @property
    def searched_models(self) -> tuple[str, ...]:
        """The models that carry searched parameters (slerp: one t, put on the source)."""
        return self.sources

    def slots(self) -> list[tuple[str, str, str]]:
        """(model, parameter, group) for each coordinate, in vector order."""
        return [(m, p, g) for m in self.searched_models for p in self.cfg.param_names() for g in self.group_names]

    @property
    def dim(self) -> int:
        return len(self.slots())

    def start(self) -> list[float]:
        """The unit-cube point of every parameter's `init` (default: the middle of its range)."""
        out = []
        for _, p, _ in self.slots():
            b = self.cfg.parameters[p]
            out.append((b.start - b.low) / (b.high - b.low))
        return out

    def point(self, start: dict[str, dict[str, float]]) -> list[float]:
        """The unit-cube point of a hand setting {source as written in the config: {parameter: value}}."""
        out = []
        for m, p, _ in self.slots():
            b = self.cfg.parameters[p]
            v = start.get(self.cfg.sources[self.sources.index(m)], {}).get(p, b.start)
            out.append((v - b.low) / (b.high - b.low))
        return out

    def values(self, x: Any) -> dict[str, dict[str, list[float]]]:
        """{model: {parameter: [value per group]}} of a unit-cube point (clipped to the cube, rounded)."""
        out: dict[str, dict[str, list[float]]] = {}
        for (m, p, _), xi in zip(self.slots(), x, strict=True):
            b = self.cfg.parameters[p]
            v = b.low + min(1.0, max(0.0, float(xi))) * (b.high - b.low)
            out.setdefault(m, {}).setdefault(p, []).append(round(v, DECIMALS))
        return out

    def setting(self, per_group: list[float]) -> float | list[dict[str, Any]]:
        if not self.groups:
            return per_group[0]
        conds: list[dict[str, Any]] = [
            {"filter": f"layers.{i}.", "value": per_group[g]} for g, layers in enumerate(self.groups) for i in layers
        ]
        return conds + [{"value": per_group[-1]}]

    def recipe(self, x: Any) -> dict[str, Any]:
        """The mergekit recipe of a unit-cube point."""
        vals = self.values(x)
        cfg = self.cfg
        recipe: dict[str, Any] = {"merge_method": cfg.method, "dtype": cfg.dtype}
        if cfg.method == "slerp":
            (src,) = self.sources
            recipe["base_model"] = self.base
            recipe["models"] = [{"model": self.base}, {"model": src}]
            recipe["parameters"] = {"t": self.setting(vals[src]["t"])}
            return recipe
        models = []
        for src in self.sources:
            params = {p: self.setting(v) for p, v in vals[src].items()}
            for p in cfg.param_names():
                params.setdefault(p, cfg.parameters[p].start)
            models.append({"model": src, "parameters": params})
        if "weight" not in cfg.parameters:
            for m in models:
                m["parameters"]["weight"] = 1.0
        recipe["models"] = models
        if self.base and cfg.method != "linear":
            recipe["base_model"] = self.base
        return recipe

    def parent_recipe(self) -> dict[str, Any]:
        """A recipe naming every parent (the starting point's)."""
        return self.recipe(self.start())

    def describe(self, x: Any, names: dict[str, str] | None = None) -> dict[str, Any]:
        """The values keyed by short model names and group names (what the store and the report show)."""
        names = names or {}
        out: dict[str, Any] = {}
        for m, params in self.values(x).items():
            label = names.get(m, Path(m).name)
            out[label] = {p: dict(zip(self.group_names, v, strict=True)) for p, v in params.items()}
        return out
