"""The data-flow space (DFS) of Akiba et al. 2024: which layer of which source the hidden state flows through.

The M layers of all sources are laid out in order (every layer of source 1, then of source 2, ...) and repeated
`repeats` (r) times: T = M x r slots. CMA-ES searches x in [0, 1]^d with, per slot t, an inclusion coordinate
(slot t is in the path when x_t > 0.5: CMA-ES on continuous values thresholded, as the paper evolves its
indicator array I with CMA-ES) and, with `scales: true`, a scale coordinate mapped into [scale.low, scale.high].

A path is a mergekit `passthrough` recipe with one slice per included slot, so a candidate is merged in memory like
any recipe and the best one is materialised as a normal model folder with lineage (a frankenmerge). Embeddings come
from the first slice's model, the final norm and head from the last slice's (mergekit's passthrough rule); a model
that ties its head to its embeddings (the zoo's) stores no head, so the head is the first slice's embeddings too.

The scale s_k of slot k multiplies the residual stream entering that layer (the paper's W, one value per slot
rather than per pair of consecutive layers). For a pre-norm block with RMSNorm (Llama, Mistral, Qwen2) this folds
into weights: RMSNorm(c*v) = RMSNorm(v) when eps = 0, so block(c*v) = c * block'(v), block' having o_proj and
down_proj scaled by 1/c; with c_k = s_1*...*s_k (the product over the included slots up to k) the stream after slot
k is c_k times the folded model's, and the final norm removes c_T. The folded path therefore gives the scaled
path's logits exactly when rms_norm_eps = 0, and otherwise differs only through eps: each RMSNorm of a stream scaled
by c divides by sqrt(c^2 ms + eps) instead of c sqrt(ms + eps), a relative change of about eps (1 - 1/c^2) / (2 ms)
(ms: the mean square of the stream). tests/test_evolve_dfs.py measures both. Scaling input_layernorm instead would
be exact for the attention input but would leave the residual stream unscaled: a different model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.evolve.config import EvolveConfig
from harness.evolve.params import DECIMALS, num_layers

FOLDED = ("self_attn.o_proj", "mlp.down_proj")  # the tensors that carry 1/c_k
PRE_NORM = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
EMPTY_PATH = "empty-path"  # the model id recorded for a candidate whose path selects no layer (never loaded)
# config.json fields sources may differ in: the layer count (a path sets its own) and how the file was stored
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "layer_types", "max_window_layers")
STORAGE_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache")


@dataclass(frozen=True)
class Slot:
    source: str
    layer: int
    repeat: int


def read_config(folder: str) -> dict[str, Any]:
    f = Path(folder) / "config.json"
    try:
        return dict(json.loads(f.read_text()))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {f} ({exc})", "point sources at model folders") from None


def check_sources(sources: list[str], scaled: bool) -> list[int]:
    """Layers per source; refuses sources that cannot share a path (one line naming both models)."""
    from harness.merge.checks import vocabulary

    cfgs = [read_config(s) for s in sources]
    first, name0 = cfgs[0], Path(sources[0]).name
    for src, cfg in zip(sources[1:], cfgs[1:], strict=True):
        name = Path(src).name
        for key in ("hidden_size", "model_type"):
            if cfg.get(key) != first.get(key):
                raise HarnessError(f"dfs sources differ in {key}: {name0} has {first.get(key)}, {name} has "
                                   f"{cfg.get(key)}", "build a layer path from models of one family and width")
        if vocabulary(_Ref(src)) != vocabulary(_Ref(sources[0])):
            raise HarnessError(f"dfs sources have different tokenizers: {name0} and {name}",
                               "build a layer path from models that share a tokenizer")
        if differ := config_differences(first, cfg):
            raise HarnessError(f"dfs sources {name0} and {name} differ in {', '.join(differ)} (config.json): the "
                               "search scores a path with the first's config, its saved folder may take another's",
                               "build a layer path from models of one configuration")
    arch = (first.get("architectures") or ["?"])[0]
    if scaled and arch not in PRE_NORM:
        raise HarnessError(f"dfs scales fold into weights only for pre-norm RMSNorm models, not {arch}",
                           f"set dfs.scales: false, or use one of {', '.join(PRE_NORM)}")
    for src, cfg in zip(sources, cfgs, strict=True):
        check_layer_types(Path(src).name, cfg.get("layer_types"))
    return [num_layers(s, "build layer paths from models whose config.json gives their layer count") for s in sources]


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The config.json keys two sources differ in, besides the layer count and storage fields (text_config: its
    keys, prefixed)."""
    out = []
    for key in sorted((set(a) | set(b)) - set(LAYER_COUNT_KEYS) - set(STORAGE_KEYS)):
        va, vb = a.get(key), b.get(key)
        if key == "text_config" and isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(prefix + key)
    return out


def check_layer_types(name: str, types: list[str] | None) -> None:
    """Refuse a model whose layers are of different kinds (Gemma2's sliding and full attention in turn): a layer moved
    along a path would take the kind of its new position, and mergekit's passthrough cannot write such a model at
    another depth either (transformers refuses its config: `layer_types` no longer has one entry per layer)."""
    kinds = sorted(set(types or ()))
    if len(kinds) > 1:
        raise HarnessError(f"dfs cannot build layer paths of {name}: its layers are of different kinds "
                           f"({', '.join(kinds)})", "search its merge parameters (a ps method) instead")


@dataclass(frozen=True)
class _Ref:
    path: str


@dataclass(frozen=True)
class DfsSpace:
    cfg: EvolveConfig
    sources: tuple[str, ...]
    layers: tuple[int, ...]  # layers per source

    @classmethod
    def build(cls, cfg: EvolveConfig, sources: list[str]) -> DfsSpace:
        assert cfg.dfs is not None
        return cls(cfg, tuple(sources), tuple(check_sources(sources, cfg.dfs.scales)))

    @property
    def path_slots(self) -> list[Slot]:
        assert self.cfg.dfs is not None
        one = [Slot(s, i, 0) for s, n in zip(self.sources, self.layers, strict=True) for i in range(n)]
        return [Slot(s.source, s.layer, r) for r in range(self.cfg.dfs.repeats) for s in one]

    def slots(self) -> list[tuple[str, str, str]]:
        """(model, parameter, slot) for each coordinate, in vector order: every inclusion, then every scale."""
        assert self.cfg.dfs is not None
        names = [(s.source, f"r{s.repeat}.layer{s.layer}") for s in self.path_slots]
        out = [(m, "include", g) for m, g in names]
        return out + ([(m, "scale", g) for m, g in names] if self.cfg.dfs.scales else [])

    @property
    def dim(self) -> int:
        return len(self.slots())

    def start(self) -> list[float]:
        """Indicators at 0.5 +- margin (the first source's layers in order, or every slot), scales at init."""
        d = self.cfg.dfs
        assert d is not None
        first = [d.start == "all" or (s.source == self.sources[0] and s.repeat == 0) for s in self.path_slots]
        x = [0.5 + d.margin if on else 0.5 - d.margin for on in first]
        if d.scales:
            x += [(d.scale.start - d.scale.low) / (d.scale.high - d.scale.low)] * len(first)
        return x

    def path(self, x: Any) -> list[tuple[Slot, float]]:
        """The included slots in order with their scales (clipped to the bounds, rounded)."""
        d = self.cfg.dfs
        assert d is not None
        slots = self.path_slots
        n = len(slots)
        out = []
        for t, slot in enumerate(slots):
            if float(x[t]) > 0.5:
                s = 1.0
                if d.scales:
                    s = round(d.scale.low + min(1.0, max(0.0, float(x[n + t]))) * (d.scale.high - d.scale.low),
                              DECIMALS)
                out.append((slot, s))
        return out

    def recipe(self, x: Any) -> dict[str, Any] | None:
        """The passthrough recipe of a path (None when it selects no layer: such a candidate is never loaded)."""
        return path_recipe(self.path(x), self.cfg.dtype)

    def parent_recipe(self) -> dict[str, Any]:
        """Every slot once: names every source (the run's parents)."""
        recipe = path_recipe([(s, 1.0) for s in self.path_slots], self.cfg.dtype)
        assert recipe is not None
        return recipe

    def describe(self, x: Any, names: dict[str, str] | None = None) -> dict[str, Any]:
        names = names or {}
        path = self.path(x)
        return {"path": [[names.get(slot.source, Path(slot.source).name), slot.layer, scale] for slot, scale in path],
                "layers": len(path)}


def path_recipe(path: list[tuple[Slot, float]], dtype: str) -> dict[str, Any] | None:
    """One slice per layer; the scales folded as 1/c_k into o_proj and down_proj (module docstring)."""
    if not path:
        return None
    slices, c = [], 1.0
    for slot, s in path:
        c *= s
        src: dict[str, Any] = {"model": slot.source, "layer_range": [slot.layer, slot.layer + 1]}
        if round(c, DECIMALS) != 1.0:
            inv = round(1.0 / c, DECIMALS)
            src["parameters"] = {"scale": [{"filter": f, "value": inv} for f in FOLDED] + [{"value": 1.0}]}
        slices.append({"sources": [src]})
    return {"merge_method": "passthrough", "dtype": dtype, "slices": slices}


def layer_bytes(folder: str, dtype: str) -> tuple[int, int]:
    """(bytes of the largest decoder layer, bytes of everything else) at the search's dtype, from headers."""
    import math
    import re

    from harness.merge.checks import safetensors_shapes

    size = 2 if dtype in ("bfloat16", "float16") else 4
    per_layer: dict[int, int] = {}
    other = 0
    for name, shape in safetensors_shapes(Path(folder)).items():
        n = math.prod(shape) * size
        m = re.search(r"(?:layers|\bh)\.(\d+)\.", name)  # Llama's model.layers.N., GPT-2's transformer.h.N.
        if m:
            per_layer[int(m.group(1))] = per_layer.get(int(m.group(1)), 0) + n
        else:
            other += n
    return max(per_layer.values(), default=0), other


def available_gb() -> float | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def check_memory(space: DfsSpace) -> float:
    """The estimated GB of the longest path (every slot) on the in-memory path: the sources' tensors (kept in the
    merger's cache), the merged state dict and the engine's copy of it. Refused before the search when above
    dfs.memory_gb (default: MemAvailable)."""
    d = space.cfg.dfs
    assert d is not None
    sizes = [layer_bytes(s, space.cfg.dtype) for s in space.sources]
    sources = sum(lb * n + other for (lb, other), n in zip(sizes, space.layers, strict=True))
    longest = sum(lb * n for (lb, _), n in zip(sizes, space.layers, strict=True)) * d.repeats
    longest += max(other for _, other in sizes)
    est = (sources + 2 * longest) / 2**30
    limit = d.memory_gb if d.memory_gb is not None else available_gb()
    if limit is not None and est > limit:
        raise HarnessError(f"the longest dfs path ({len(space.path_slots)} layers) needs an estimated {est:.3g} GB "
                           f"(sources {sources / 2**30:.3g} GB + 2 x path {longest / 2**30:.3g} GB), more than the "
                           f"{limit:.3g} GB available", "lower dfs.repeats, or use fewer or smaller sources")
    return est
