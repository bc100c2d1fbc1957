"""The one small interface every backend implements: build an lm-eval LM for a model. No scoring here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lm_eval.api.model import LM


@dataclass(frozen=True)
class BackendOptions:
    """What a backend needs besides the model. Fields that change scores are part of the run id."""

    batch_size: int | str = 16
    device: str | None = None  # hf: cpu, cuda, cuda:1 ... (default: cuda if available else cpu)
    dtype: str = "auto"
    max_length: int | None = None
    add_bos_token: bool | None = None  # resolved from the tokenizer by the runner (see docs/eval.md)
    trust_remote_code: bool = False
    allow_pickle: bool = False  # accept pickle-only checkpoints (pytorch_model.bin): they can run code when loaded
    seed: int = 1234
    base_url: str | None = None  # openai: the server root, e.g. http://127.0.0.1:8000
    served_model: str | None = None  # openai: the model name the server knows
    tokenizer: str | None = None  # openai: a local tokenizer folder (default: the model folder)
    chat: bool = False  # openai: use /v1/chat/completions (generation tasks only)
    num_concurrent: int = 4  # openai: parallel requests
    max_retries: int = 2  # openai


@dataclass(frozen=True)
class ModelTarget:
    """The model to evaluate: a content hash and, for local models, the folder."""

    model_id: str
    path: Path | None
    name: str


class Backend(Protocol):
    name: str

    def version(self) -> str:
        """The engine's version, stored with every run."""
        ...

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        """An lm-eval LM ready to answer loglikelihood / loglikelihood_rolling / generate_until."""
        ...


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
