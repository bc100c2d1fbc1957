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
    chat: bool = False  # lm-eval's apply_chat_template (openai: /v1/chat/completions, generation tasks only)
    num_concurrent: int = 4  # openai: parallel requests
    max_retries: int = 2  # openai
    tensor_parallel_size: int = 1  # vllm: GPUs one engine spans (vLLM's tensor_parallel_size)
    data_parallel_size: int = 1  # vllm: engine replicas within one evaluation (lm-eval's data_parallel_size, Ray)
    gpu_memory_utilization: float | None = None  # vllm: share of each GPU's memory (default 0.9; 0.5 on CPU)

    def gpus_per_engine(self) -> int:
        """GPUs one evaluation holds: tensor x data parallel (1 for the other backends)."""
        return self.tensor_parallel_size * self.data_parallel_size

    def engine_settings(self, backend: str) -> dict[str, object]:
        """vLLM's parallel layout and memory share: recorded with a run, not part of its id (like the batch size)."""
        if backend != "vllm":
            return {}
        return {"tensor_parallel_size": self.tensor_parallel_size, "data_parallel_size": self.data_parallel_size,
                "gpu_memory_utilization": self.gpu_memory_utilization}


@dataclass(frozen=True)
class ModelTarget:
    """The model to evaluate: a content hash and, for local models, the folder."""

    model_id: str
    path: Path | None
    name: str


class Backend(Protocol):
    name: str

    def version(self) -> str:
        """lm-eval's version and the engine's (`through_lm_eval`), stored with every run and keying its answers."""
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


def through_lm_eval(engines: str) -> str:
    """'lm_eval 0.4.13; ENGINES': every backend scores through lm-eval, which builds the prompts and computes the
    metrics, so its version is part of each backend's. The format is the request cache key's from before lm-eval
    was in a backend's version (run_settings.engine_versions), so answers cached then are still found."""
    return f"lm_eval {package_version('lm_eval')}; {engines}"
