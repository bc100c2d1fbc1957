"""A live vLLM engine whose weights are swapped per candidate. Every vLLM call goes through the vLLM backend
adapter (harness.evaluate.backends.vllm: reload_weights, prompt_logprobs), on vLLM's public API only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class VLLMEngine:
    """lm-eval's VLLM wrapper as the vllm backend builds it; swap = reload_weights into the live engine."""

    name = "vllm"

    def __init__(self, folder: Path, dtype: str, batch_size: int, add_bos_token: bool | None, seed: int = 1234):
        from harness.evaluate.backends.vllm import check_version
        from harness.evolve.engines import backend_lm

        check_version()
        self.lm = backend_lm("vllm", folder, dtype, batch_size, add_bos_token, seed)
        self.llm = self.lm.model  # type: ignore[attr-defined]  # vllm.LLM
        config = self.llm.llm_engine.model_config.hf_config
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self.swaps = 0

    def swap(self, tensors: dict[str, torch.Tensor]) -> None:
        from harness.evaluate.backends.vllm import reload_weights

        reload_weights(self.llm, tensors, self.tied)
        self.swaps += 1

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float]]:
        from harness.evaluate.backends.vllm import prompt_logprobs

        return prompt_logprobs(self.llm, prompts)

    def close(self) -> None:
        import gc

        self.lm = None  # type: ignore[assignment]
        self.llm = None
        gc.collect()
