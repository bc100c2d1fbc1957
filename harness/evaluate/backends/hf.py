"""transformers on CPU or GPU through lm-eval's HFLM (log-likelihoods at the cost of the continuation: hf_scoring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version, through_lm_eval

if TYPE_CHECKING:
    from lm_eval.api.model import LM


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFBackend:
    name = "hf"

    def version(self) -> str:
        return through_lm_eval(f"transformers {package_version('transformers')}, torch {package_version('torch')}")

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        from harness.evaluate.backends.hf_scoring import ContinuationHFLM

        if target.path is None:
            raise HarnessError(f"the hf backend needs a local model folder, got {target.name!r}",
                               "pass a model folder or use --backend openai for an endpoint")
        kwargs: dict[str, object] = {
            "pretrained": str(target.path), "device": options.device or default_device(),
            "dtype": options.dtype, "batch_size": options.batch_size,
            "trust_remote_code": options.trust_remote_code,
        }
        if options.add_bos_token is not None:
            kwargs["add_bos_token"] = options.add_bos_token
        if options.max_length:
            kwargs["max_length"] = options.max_length
        return ContinuationHFLM(**kwargs)


BACKEND = HFBackend()
