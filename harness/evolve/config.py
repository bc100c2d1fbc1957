"""The evolve config: a YAML file, safe-loaded and validated once by frozen pydantic models.

    cfg = load_config("examples/evolve_zoo.yaml")      # EvolveConfig; HarnessError naming the field on bad input

Model references and `suites_dir` are resolved relative to the config file's folder (then the cwd) when they are
folders; otherwise they are names or ids in the store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.configs import load_yaml_config, validated

METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp", "dfs")
NEEDS_BASE = ("task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp")
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "linear": ("weight",),
    "task_arithmetic": ("weight",),
    "ties": ("weight", "density"),
    "dare_ties": ("weight", "density"),
    "dare_linear": ("weight", "density"),
    "slerp": ("t",),
    "dfs": (),
}
# parameters mergekit clamps to a domain (sparsify: a density >= 1 keeps everything, <= 0 nothing): bounds beyond it
# would give CMA-ES a flat stretch; weight and slerp's t are not clamped (negative weights, extrapolation)
DOMAINS: dict[str, tuple[float, float]] = {"density": (0.0, 1.0)}
BACKENDS = ("hf", "vllm")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bounds(_Frozen):
    """The searched range of one merge parameter, and where the search starts."""

    low: float
    high: float
    init: float | None = None  # default: the middle of the range

    @model_validator(mode="after")
    def _check(self) -> Bounds:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low ({self.low}) and high ({self.high}) must be finite numbers")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.init is not None and not self.low <= self.init <= self.high:
            raise ValueError(f"init ({self.init}) must lie in [{self.low}, {self.high}]")
        return self

    @property
    def start(self) -> float:
        return (self.low + self.high) / 2 if self.init is None else self.init


class FitnessSuite(_Frozen):
    """One suite of the fitness: its weight in the sum, and optionally which tasks and metric count."""

    suite: str
    weight: float = 1.0
    tasks: tuple[str, ...] | None = None  # default: every task of the split
    metric: str | None = None  # default: each task's first metric (acc, exact_match, ...)


class Budget(_Frozen):
    """When the search stops: whichever limit comes first (at least one is required)."""

    generations: int | None = Field(default=None, ge=1)
    evaluations: int | None = Field(default=None, ge=1)
    minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.generations is None and self.evaluations is None and self.minutes is None:
            raise ValueError("set generations, evaluations or minutes")
        return self


class DfsSettings(_Frozen):
    """The data-flow-space (layer path) search: T = M x repeats slots, M the layers of all sources laid out in order
    (every layer of source 1, then of source 2, ...), repeated `repeats` times; each slot has an inclusion
    indicator (CMA-ES coordinate > 0.5) and, unless `scales: false`, a scale of the residual stream entering it."""

    repeats: int = Field(default=2, ge=1)  # the paper's r
    scales: bool = True  # search a scale per slot (the paper's W, per slot)
    scale: Bounds = Bounds(low=0.5, high=2.0, init=1.0)
    start: Literal["first", "all"] = "first"  # the starting path: the first source's layers, or every slot
    margin: float = Field(default=0.25, gt=0, le=0.5)  # start indicators at 0.5 +- margin
    memory_gb: float | None = Field(default=None, gt=0)  # the memory a candidate may use (default: what is free)

    @field_validator("scale")
    @classmethod
    def _positive(cls, scale: Bounds) -> Bounds:
        """A scale of 0 cannot be folded (1/c_k); a negative one flips the stream's sign, which RMSNorm removes, so
        the folded weights would not be the scaled path (harness/evolve/dfs.py)."""
        if scale.low <= 0:
            raise ValueError(f"low ({scale.low}) must be above 0: a scale multiplies the residual stream and "
                             "is folded as 1/scale; use e.g. low: 0.5")
        return scale


class Finalists(_Frozen):
    """A declared second selection: the `count` fittest candidates (distinct models) are scored on `split`, and the
    best there becomes the run's pick, recorded as a selection on that split as well as on the search split."""

    count: int = Field(default=3, ge=2)
    split: str


class EvolveConfig(_Frozen):
    name: str | None = None
    base: str | None = None
    sources: tuple[str, ...] = Field(min_length=1)
    method: Literal["linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp", "dfs"]
    dfs: DfsSettings | None = None  # with method dfs: the layer path search; with a PS method: PS then DFS
    # hand recipes scored first (generation 0), {source as written in `sources`: {parameter: value}} each (the
    # value holds for every group; unnamed ones start at `init`); the search's mean starts at the fittest of them
    starts: tuple[dict[str, dict[str, float]], ...] = ()
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    parameters: dict[str, Bounds] = Field(default_factory=dict)
    granularity: Literal["global", "layer_groups", "layer"] = "global"
    layer_groups: int = Field(default=2, ge=1)
    fitness: tuple[FitnessSuite, ...] = Field(min_length=1)
    search_split: str = "search"
    heldout_split: str = "heldout"
    limit: int | None = Field(default=None, ge=1)  # documents per task during the search
    heldout_limit: int | None = Field(default=None, ge=1)  # documents per task in held-out checks (None: all)
    report_suites: tuple[str, ...] = ()  # suite[:split] the final best is also evaluated on
    finalists: Finalists | None = None  # decide among the fittest few on another split, declared as a selection
    suites_dir: str | None = None  # a folder of suites besides the repository's suites/
    population: int = Field(default=8, ge=2)
    sigma: float = Field(default=0.2, gt=0, le=1)  # CMA-ES step size in the unit cube of the parameters
    budget: Budget
    seed: int = 0
    backend: Literal["hf", "vllm"] = "hf"
    batch_size: int = Field(default=32, ge=1)
    check_every: int = Field(default=5, ge=0)  # held-out check of the current best every N generations (0: never)
    verify_every: int = Field(default=20, ge=0)  # vllm: compare logprobs with hf every N swaps (0: first swap only)
    workers: int = Field(default=1, ge=1)  # >1: Ray actors, one engine each (needs `pip install harness[ray]`)
    ray_address: str | None = None  # a Ray cluster; default: a local Ray
    threads: int | None = Field(default=None, ge=1)  # torch CPU threads (default: torch's choice)

    @model_validator(mode="after")
    def _check(self) -> EvolveConfig:
        if self.method in NEEDS_BASE and not self.base:
            raise ValueError(f"method {self.method} needs `base`")
        if self.method == "slerp" and len(self.sources) != 1:
            raise ValueError("slerp merges `base` with exactly one source: give one entry in `sources`")
        allowed = METHOD_PARAMS[self.method]
        self._check_parameters(allowed)
        if self.method == "dfs":
            self._check_dfs()
        elif not self.parameters:
            raise ValueError(f"parameters: give bounds for at least one of {', '.join(allowed)}")
        self._check_starts()
        self._check_fitness()
        if self.dfs is not None and self.backend != "hf":
            raise ValueError("a dfs search runs on backend hf (a live vLLM engine cannot change its layer count)")
        if self.search_split == self.heldout_split:
            raise ValueError("search_split and heldout_split must differ: the held-out split is the honest check")
        if self.finalists is not None and self.finalists.split == self.search_split:
            raise ValueError("finalists.split must differ from search_split: the finalists are its fittest already")
        return self

    def _check_parameters(self, allowed: tuple[str, ...]) -> None:
        for name, b in self.parameters.items():
            if name not in allowed:
                raise ValueError(f"parameters.{name} is not searched by {self.method} (use {', '.join(allowed)})")
            lo, hi = DOMAINS.get(name, (float("-inf"), float("inf")))
            if b.low < lo or b.high > hi:
                raise ValueError(f"parameters.{name}: [{b.low}, {b.high}] leaves [{lo}, {hi}], where mergekit clamps "
                                 f"{name} (the rest of the range is flat for the search): keep the bounds inside it")

    def _check_dfs(self) -> None:
        if self.dfs is None:
            raise ValueError("method dfs needs a `dfs:` block (repeats, scales, scale bounds)")
        if self.base:
            raise ValueError("method dfs takes no `base`: the path is built from the layers of `sources`")

    def _check_fitness(self) -> None:
        """Entries of one suite are weighted apart, so each must name its own tasks (a task in two would count twice
        under two weights)."""
        for k, f in enumerate(self.fitness):
            for g in self.fitness[:k]:
                if f.suite == g.suite and (f.tasks is None or g.tasks is None or set(f.tasks) & set(g.tasks)):
                    raise ValueError(f"fitness lists suite {f.suite} more than once with overlapping tasks: give each "
                                     "entry its own `tasks` (entries are weighted apart), or list the suite once")

    def _check_starts(self) -> None:
        if self.starts and self.method == "dfs":
            raise ValueError("starts: are parameter settings; a dfs search starts from dfs.start")
        for k, start in enumerate(self.starts):
            for src, params in start.items():
                if src not in self.sources:
                    raise ValueError(f"starts[{k}]: {src!r} is not one of sources ({', '.join(self.sources)})")
                for p, v in params.items():
                    b = self.parameters.get(p)
                    if b is None:
                        raise ValueError(f"starts[{k}].{src}: {p} is not a searched parameter")
                    if not b.low <= v <= b.high:
                        raise ValueError(f"starts[{k}].{src}.{p}: {v} lies outside [{b.low}, {b.high}]")

    @property
    def ps_dfs(self) -> bool:
        """PS+DFS: a parameter-space method with a `dfs:` block searches PS first, then DFS over its best merge
        and the sources."""
        return self.method != "dfs" and self.dfs is not None

    def param_names(self) -> tuple[str, ...]:
        return tuple(p for p in METHOD_PARAMS[self.method] if p in self.parameters)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the search's result: the evolve run id hashes these (budget, speed and report
        settings are left out, so a run can be resumed with a larger budget or on more workers)."""
        skip = {"name", "budget", "report_suites", "batch_size", "check_every", "verify_every", "workers",
                "ray_address", "threads"}
        if self.dfs is None:
            skip.add("dfs")  # PS configs keep the ids they had before DFS and starts existed
        if not self.starts:
            skip.add("starts")
        if self.finalists is None:
            skip.add("finalists")
        out = self.model_dump(mode="json", exclude=skip)
        if self.dfs is not None:
            out["dfs"].pop("memory_gb", None)
        return out

    def fitness_key(self) -> dict[str, Any]:
        """What decides a candidate's fitness besides the model: evaluations with the same key are reusable."""
        return {"fitness": [f.model_dump() for f in self.fitness], "split": self.search_split,
                "limit": self.limit, "backend": self.backend, "dtype": self.dtype}


def parse_config(data: Any, source: str = "config") -> EvolveConfig:
    return validated(EvolveConfig, data, source, "config", "docs/evolve.md")


def load_config(path: str | Path) -> tuple[EvolveConfig, Path]:
    """(config, the folder relative references start from)."""
    return load_yaml_config(path, EvolveConfig, "evolve", "docs/evolve.md")


def resolve_ref(ref: str, base_dir: Path) -> str:
    """A folder reference made absolute (config folder first, then the cwd); anything else is kept as is."""
    for candidate in (base_dir / ref, Path(ref)):
        if candidate.is_dir():
            return str(candidate.resolve())
    return ref
