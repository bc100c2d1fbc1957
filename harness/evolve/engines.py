"""One engine per search, loaded once; each candidate's weights are swapped into it.

    engine = open_engine("hf", base_folder, dtype="float32", batch_size=32, add_bos_token=True)
    engine.swap(tensors)          # the merged state dict of a candidate
    engine.lm                     # an lm-eval LM computing with those weights

The engines are built by the evaluation backends themselves (harness.evaluate.backends), with the settings the
runner uses, so a candidate's fitness equals what `harness eval` gives its materialised folder. `hf` loads the state
dict into the live transformers model; `vllm` reloads the live engine's weights (harness.evolve.vllm_swap).
`verify` compares the engine's prompt logprobs with a transformers forward pass of the same weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch
    from lm_eval.api.model import LM

VERIFY_TOL = 1e-3


class Engine(Protocol):
    name: str
    lm: LM

    def swap(self, tensors: dict[str, torch.Tensor]) -> None: ...

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float]]: ...

    def close(self) -> None: ...


def backend_lm(backend: str, folder: Path, dtype: str, batch_size: int, add_bos_token: bool | None,
               seed: int = 1234) -> LM:
    """The lm-eval LM the evaluation backend builds for a model folder (no request cache: weights change)."""
    from harness.evaluate.backends import get_backend
    from harness.evaluate.backends.base import BackendOptions, ModelTarget

    opts = BackendOptions(batch_size=batch_size, dtype=dtype, add_bos_token=add_bos_token, seed=seed)
    return get_backend(backend).build(ModelTarget("evolve-engine", folder, folder.name), opts)


def check_keys(tensors: dict[str, Any], expected: set[str], tied: set[str]) -> None:
    """Refuse partial or foreign state dicts (a half-swapped model would be scored as a candidate)."""
    extra = set(tensors) - expected
    missing = expected - set(tensors) - tied
    if extra or missing:
        name = sorted(extra or missing)[0]
        raise HarnessError(f"merged weights do not fit the engine's model ({'unexpected' if extra else 'missing'} "
                           f"tensor {name})", "merge models of the base's architecture")


class HFEngine:
    """A transformers model inside lm-eval's HFLM; swap = load_state_dict into the live model."""

    name = "hf"

    def __init__(self, folder: Path, dtype: str, batch_size: int, add_bos_token: bool | None, seed: int = 1234):
        self.lm = backend_lm("hf", folder, dtype, batch_size, add_bos_token, seed)
        self.model = self.lm.model  # type: ignore[attr-defined]
        self.model.eval()
        self._keys = set(self.model.state_dict())
        self._tied = tied_keys(self.model)
        self._blocks = block_list_name(self.model.get_decoder())  # "layers"; "h" in GPT-2 and Falcon
        self._layers = list(getattr(self.model.get_decoder(), self._blocks))  # every layer built so far (dfs reuses)

    def fit_layers(self, n: int) -> None:
        """Give the live model n decoder layers (a dfs path's depth): layers built once are reused, new ones are
        built by the model's own layer class; their weights all come from the next load_state_dict."""
        import torch

        from harness.evolve.dfs import check_layer_types

        decoder, config = self.model.get_decoder(), self.model.config
        check_layer_types(config.model_type, getattr(config, "layer_types", None))
        first = self._layers[0]
        param = next(first.parameters())
        while len(self._layers) < n:
            self._layers.append(type(first)(config, layer_idx=len(self._layers)).to(param.dtype).to(param.device))
        setattr(decoder, self._blocks, torch.nn.ModuleList(self._layers[:n]))
        config.num_hidden_layers = n
        if getattr(config, "layer_types", None):
            config.layer_types = [config.layer_types[0]] * n
        self._keys = set(self.model.state_dict())

    def swap(self, tensors: dict[str, torch.Tensor]) -> None:
        import torch

        n = tensor_layers(tensors)
        if n and n != len(getattr(self.model.get_decoder(), self._blocks)):
            self.fit_layers(n)
        check_keys(tensors, self._keys, self._tied)
        with torch.no_grad():
            self.model.load_state_dict(tensors, strict=False)
        live = self.model.state_dict()
        for k, v in tensors.items():  # the live parameters must now be the candidate's (no copies kept)
            if not torch.equal(live[k], v.to(live[k].dtype)):
                raise HarnessError(f"the hf engine kept old weights for {k}", "report this as a bug")

    def prompt_logprobs(self, prompts: list[list[int]]) -> list[list[float]]:
        return hf_prompt_logprobs(self.model, prompts)

    def close(self) -> None:
        self.lm = None  # type: ignore[assignment]
        self.model = None


def block_list_name(decoder: Any) -> str:
    """The attribute of a decoder that holds its layers: `layers` (Llama, Mistral, Qwen2, GPT-NeoX...), `h` (GPT-2,
    Falcon)."""
    import torch

    for name in BLOCK_LISTS:
        if isinstance(getattr(decoder, name, None), torch.nn.ModuleList):
            return name
    raise HarnessError(f"the hf engine cannot find the layers of {type(decoder).__name__}",
                       "evolve models whose decoder keeps its layers in .layers or .h (Llama, Mistral, GPT-2...)")


BLOCK_LISTS = ("layers", "h")


def tensor_layers(tensors: dict[str, Any]) -> int:
    """The number of decoder layers a state dict holds (model.layers.N. or transformer.h.N. names)."""
    import re

    found = [int(m.group(1)) for k in tensors if (m := re.search(r"\.(?:layers|h)\.(\d+)\.", k))]
    return max(found) + 1 if found else 0


def tied_keys(model: Any) -> set[str]:
    """State-dict keys that are views of another parameter (tied heads): a merge may leave them out."""
    if getattr(model.config, "tie_word_embeddings", False):
        return {k for k in model.state_dict() if k.endswith("lm_head.weight")}
    return set()


def hf_prompt_logprobs(model: Any, prompts: list[list[int]]) -> list[list[float]]:
    """log p(token_i | tokens_<i) for i >= 1 of each prompt, by a plain forward pass."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=model.device)
            logp = torch.log_softmax(model(x).logits[0].float(), dim=-1)
            out.append([float(logp[i - 1, ids[i]]) for i in range(1, len(ids))])
    return out


class Reference:
    """A transformers copy of the model used to check an engine after a swap (built on first use)."""

    def __init__(self, folder: Path, dtype: str):
        self.folder, self.dtype = folder, dtype
        self.model: Any = None

    def logprobs(self, tensors: dict[str, torch.Tensor], prompts: list[list[int]]) -> list[list[float]]:
        import torch
        from transformers import AutoModelForCausalLM

        if self.model is None:
            self.model = AutoModelForCausalLM.from_pretrained(self.folder, dtype=getattr(torch, self.dtype)).eval()
        with torch.no_grad():
            self.model.load_state_dict(tensors, strict=False)
        return hf_prompt_logprobs(self.model, prompts)


def probe_prompts(vocab_size: int, n: int = 3, length: int = 24, seed: int = 0) -> list[list[int]]:
    """A few fixed token sequences for logprob checks."""
    import random

    rng = random.Random(seed)
    return [[rng.randrange(4, vocab_size) for _ in range(length)] for _ in range(n)]


def max_gap(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def verify(engine: Engine, reference: Reference, tensors: dict[str, torch.Tensor], prompts: list[list[int]],
           tol: float = VERIFY_TOL) -> float:
    """The largest logprob gap between the engine and transformers on the candidate's weights; raises above tol."""
    gap = max_gap(engine.prompt_logprobs(prompts), reference.logprobs(tensors, prompts))
    if not gap <= tol:
        raise HarnessError(f"after a weight swap the {engine.name} engine's logprobs differ from transformers' by "
                           f"{gap:.2e} (> {tol:g})", "use backend: hf, or report the vLLM version as unsupported")
    return gap


def open_engine(backend: str, folder: Path, dtype: str, batch_size: int, add_bos_token: bool | None,
                seed: int = 1234) -> Engine:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    engine: Engine
    if backend == "hf":
        engine = HFEngine(folder, dtype, batch_size, add_bos_token, seed)
    elif backend == "vllm":
        from harness.evolve.vllm_swap import VLLMEngine

        engine = VLLMEngine(folder, dtype, batch_size, add_bos_token, seed)
    else:
        raise HarnessError(f"unknown evolve backend {backend!r}", "use hf or vllm")
    remember_tokens(engine.lm)
    quiet_requests(engine.lm)
    return engine


def quiet_requests(lm: Any) -> None:
    """The LM's request methods without their tqdm bars ("Tokenizing inputs", "Running generate_until requests"):
    one per task per candidate otherwise; the search draws its own (request_cache.without_bar)."""
    from harness.evaluate.request_cache import without_bar

    for method in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        fn = getattr(lm, method, None)
        if fn is not None:
            setattr(lm, method, without_bar(fn))


def remember_tokens(lm: Any) -> None:
    """The engine's tokenizer never changes while candidates come and go: each text is encoded once (every
    candidate asks for the same contexts), by `tok_encode`, by `_encode_pair` (a request's context and
    continuation) and by `tok_batch_encode` (a generation batch). Callers get copies; the encodings are the
    tokenizer's own."""
    for method, copy in (("tok_encode", _copied), ("_encode_pair", _pair), ("tok_batch_encode", _cloned)):
        if callable(getattr(lm, method, None)):
            setattr(lm, method, _Remembered(getattr(lm, method), copy))


class _Remembered:
    """A pure function of its arguments, each answer computed once and handed out as a copy."""

    def __init__(self, real: Any, copy: Any) -> None:
        self.real, self.copy, self.known = real, copy, {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = (tuple(tuple(a) if isinstance(a, list) else a for a in args), tuple(sorted(kwargs.items())))
        if key not in self.known:
            self.known[key] = self.real(*args, **kwargs)
        return self.copy(self.known[key])


def _copied(hit: Any) -> Any:
    """Token ids (a list of them, or a list of such lists) as new lists."""
    if isinstance(hit, list) and hit and isinstance(hit[0], list):
        return [list(x) for x in hit]
    return list(hit) if isinstance(hit, list) else hit


def _pair(hit: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
    """_encode_pair's (context ids, continuation ids), as new lists."""
    return list(hit[0]), list(hit[1])


def _cloned(hit: Any) -> Any:
    """tok_batch_encode's (input ids, attention mask) tensors, cloned."""
    return tuple(t.clone() for t in hit)
