"""Any OpenAI-compatible endpoint through lm-eval's local-completions / local-chat-completions.

Requests are tokenized here with the model's own tokenizer and sent as token ids, with BOS decided the same
way as for hf and vllm (lm-eval's API models default to no BOS: the source of the hf/openai difference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version, through_lm_eval

if TYPE_CHECKING:
    from lm_eval.api.model import LM


def check_reachable(base_url: str, timeout: float = 5.0) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/v1/models", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HarnessError(f"cannot reach the endpoint {base_url} ({reason})",
                           "start it (harness serve MODEL) or pass --serve / the right --base-url") from None


def require_endpoint(base_url: str | None, serve: bool = False) -> None:
    """The openai backend scores through an endpoint: --base-url, or --serve to start one for the run."""
    if not base_url and not serve:
        raise HarnessError("the openai backend needs an endpoint", "pass --base-url URL or --serve")


def model_context(target: ModelTarget, tokenizer: str, trust_remote_code: bool) -> int:
    """The served model's context, decided as lm-eval's HFLM decides it (its config, else its tokenizer's
    model_max_length, else 2048): lm-eval's API models would otherwise cut every request to 2048 tokens."""
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoConfig, AutoTokenizer

    folder = str(target.path) if target.path else tokenizer
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):  # a tokenizer-only folder: its model_max_length decides
        config = None
    return resolve_max_length(config, AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code))


class OpenAIBackend:
    name = "openai"

    def version(self) -> str:
        # "context: the model's": answers cached when lm-eval cut every request to 2048 tokens are not read again
        aiohttp = package_version("aiohttp")
        return through_lm_eval(f"lm-eval local-completions (context: the model's), aiohttp {aiohttp}")

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        require_endpoint(options.base_url)
        check_reachable(options.base_url)
        tokenizer = options.tokenizer or (str(target.path) if target.path else None)
        if tokenizer is None:
            raise HarnessError("the openai backend needs a tokenizer to score loglikelihoods",
                               "pass --tokenizer FOLDER")
        root = options.base_url.rstrip("/")
        common: dict[str, object] = {
            "model": options.served_model or target.name, "tokenizer": tokenizer,
            "tokenizer_backend": "huggingface", "max_retries": options.max_retries,
            "num_concurrent": options.num_concurrent, "seed": options.seed, "timeout": 120,
            "trust_remote_code": options.trust_remote_code,
        }
        common["max_length"] = options.max_length or model_context(target, tokenizer, options.trust_remote_code)
        if options.chat:
            from lm_eval.models.openai_completions import LocalChatCompletion

            return LocalChatCompletion(base_url=f"{root}/v1/chat/completions", tokenized_requests=False, **common)
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        batch = options.batch_size if isinstance(options.batch_size, int) else 1
        return LocalCompletionsAPI(
            base_url=f"{root}/v1/completions", tokenized_requests=True, batch_size=batch,
            add_bos_token=bool(options.add_bos_token), **common,
        )


BACKEND = OpenAIBackend()
