"""The `harness dtm` config: a YAML file, safe-loaded and validated once by frozen pydantic models.

    cfg, here = load_config("examples/dtm_zoo.yaml")     # DtmConfig, the folder relative paths start from
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from harness.configs import load_yaml_config, validated
from harness.train.finetune import FinetuneParams

MERGES = ("linear", "fisher", "ties", "dare_ties")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ZooData(_Frozen):
    """The zoo writes the data: `n` examples, a fraction `biased` of them additions only."""

    n: int = Field(default=2000, ge=1)
    biased: float = Field(default=0.4, ge=0, le=1)


class Data(_Frozen):
    path: str | None = None  # a JSONL file of prompt/response or chat messages
    zoo: ZooData | None = None

    @model_validator(mode="after")
    def _one(self) -> Data:
        if (self.path is None) == (self.zoo is None):
            raise ValueError("give exactly one of data.path (a JSONL file) or data.zoo")
        return self


class Lora(_Frozen):
    """LoRA adapters (peft) instead of full fine-tuning, merged back into full weights before any merge."""

    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    targets: tuple[str, ...] = Field(default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"), min_length=1)


class Train(_Frozen):
    epochs: float = Field(default=2.0, gt=0)
    batch: int = Field(default=16, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    warmup: float = Field(default=0.1, ge=0, lt=1)
    lora: Lora | None = None  # None: every weight is trained (the zoo's default)
    workers: int = Field(default=1, ge=1)  # > 1: fine-tunes run as Ray tasks, one GPU each where there are GPUs
    ray_address: str | None = None  # a Ray cluster (ray://host:10001 or auto); None starts a local one


class DtmConfig(_Frozen):
    name: str = Field(default="dtm", pattern=r"^[A-Za-z0-9_.-]+$")
    base: str  # zoo:<member> (built if missing), a model folder, or a name in the store
    data: Data
    k: int = Field(default=4, ge=1)
    seed: int = 0
    embedding: Literal["base"] | str = "base"  # the base's mean hidden state, or another causal LM folder
    train: Train = Train()
    l2: float = Field(default=0.01, ge=0)  # vanilla+L2: weight of sum((w - w_base)^2)
    soup_lrs: tuple[PositiveFloat, ...] = Field(default=(5e-4, 1e-3, 2e-3, 3e-3), min_length=1)
    curve: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 1.0)  # fractions of the data for vanilla fine-tuning
    merges: tuple[Literal["linear", "fisher", "ties", "dare_ties"], ...] = MERGES
    density: float = Field(default=0.5, gt=0, le=1)  # ties / dare_ties
    ensemble: bool = True
    suites: tuple[str, ...] = Field(min_length=1)  # suite:split
    limit: int | None = Field(default=None, ge=1)  # documents per task
    threads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DtmConfig:
        bad = [f for f in self.curve if not 0 < f <= 1]
        if bad:
            raise ValueError(f"curve fractions must lie in (0, 1], got {bad[0]}")
        percents = [round(100 * f) for f in self.curve]  # a point's model and row are named by its percent
        if len(set(percents)) < len(percents):
            raise ValueError(f"curve fractions must differ in whole percents, got {list(self.curve)}")
        return self

    def params(self, lr: float | None = None, l2: float = 0.0, seed: int | None = None) -> FinetuneParams:
        t = self.train
        lora = {"lora_rank": t.lora.rank, "lora_alpha": t.lora.alpha, "lora_targets": t.lora.targets} if t.lora else {}
        return FinetuneParams(epochs=t.epochs, batch=t.batch, lr=t.lr if lr is None else lr, warmup=t.warmup, l2=l2,
                              seed=self.seed if seed is None else seed, **lora)

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"threads": True, "name": True,
                                                     "train": {"workers", "ray_address"}})
        if self.train.lora is None:  # studies from before LoRA existed keep their folders
            del data["train"]["lora"]
        return data


def parse_config(data: Any, source: str = "config") -> DtmConfig:
    return validated(DtmConfig, data, source, "config", "docs/dtm.md")


def load_config(path: str | Path) -> tuple[DtmConfig, Path]:
    return load_yaml_config(path, DtmConfig, "dtm", "docs/dtm.md")
