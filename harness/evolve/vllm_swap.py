"""Swapping a candidate's weights into a live vLLM engine, through vLLM's public API only (pinned: vLLM 0.32).

The route (docs/evolve.md, shared notes "vllm-weight-swap"): `LLM.collective_rpc("reload_weights",
kwargs={"weights_iterator": [(hf_name, tensor), ...]})` in-process, which reloads layer by layer, reruns the
post-load processing and copies into the existing storage; then `LLM.reset_prefix_cache()` (a cached prefix would
otherwise be computed with the old weights). On CPU a tied `lm_head` keeps its old packed copy after a reload, so its
`process_weights_after_loading` is rerun through `LLM.apply_model`. Whole state dicts only (never half of a fused
q/k/v group), and only finite ones (a NaN left in the KV cache poisons the next candidate): the merger checks that.

Meant to move into the vLLM backend adapter (harness/evaluate/backends/vllm.py); self-contained until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

SUPPORTED = ("0.32",)


def _repack_tied_head(model: Any) -> bool:
    """Rerun the tied head's post-load processing (CPU repacks linear weights; the tie is lost on reload)."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is None or method is None or not hasattr(method, "process_weights_after_loading"):
        return False
    method.process_weights_after_loading(head)
    return True


class VLLMEngine:
    """lm-eval's VLLM wrapper as the vllm backend builds it; swap = reload_weights into the live engine."""

    name = "vllm"

    def __init__(self, folder: Path, dtype: str, batch_size: int, add_bos_token: bool | None, seed: int = 1234):
        from harness.evaluate.backends.base import package_version
        from harness.evolve.engines import backend_lm

        version = package_version("vllm")
        if not version.startswith(SUPPORTED):
            raise HarnessError(f"weight swapping is tested on vLLM {SUPPORTED[0]}, not {version}",
                               f"install vLLM {SUPPORTED[0]}.x or use backend: hf")
        self.lm = backend_lm("vllm", folder, dtype, batch_size, add_bos_token, seed)
        self.llm = self.lm.model  # type: ignore[attr-defined]  # vllm.LLM
        config = self.llm.llm_engine.model_config.hf_config
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self.swaps = 0

    def swap(self, tensors: dict[str, torch.Tensor]) -> None:
        weights = list(tensors.items())
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        except Exception as exc:  # noqa: BLE001 - a failed reload leaves the engine half-loaded
            raise HarnessError(f"vLLM refused the merged weights ({type(exc).__name__}: {str(exc)[:200]})",
                               "use backend: hf for this model") from None
        if self.tied:
            self.llm.apply_model(_repack_tied_head)
        self.llm.reset_prefix_cache()
        self.swaps += 1

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        result = []
        for ids, out in zip(prompts, outs, strict=True):
            lps = out.prompt_logprobs or []
            result.append([float(lps[i][ids[i]].logprob) for i in range(1, len(ids))])
        return result

    def close(self) -> None:
        import gc

        self.lm = None  # type: ignore[assignment]
        self.llm = None
        gc.collect()
