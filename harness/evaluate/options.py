"""The one place where flags become evaluation options: the CLI's `eval`, `baseline save` and `check`, evolve's
final evaluations and a baseline file's stored options all build EvalOptions here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.evaluate.runner import EvalOptions


def batch_size_value(text: str | int) -> int | str:
    """'16' -> 16; 'auto' (and lm-eval's 'auto:N') stay strings."""
    return int(text) if isinstance(text, int) or str(text).isdigit() else str(text)


def eval_options(
    *, split: str | None = None, backend: str = "hf", limit: int | None = None, tier: str | None = None,
    tasks: str | tuple[str, ...] | list[str] | None = None, seed: int = 1234, rerun: bool = False,
    use_cache: bool = True, serve: bool = False, hub: bool = False, batch_size: str | int = 16,
    device: str | None = None, dtype: str = "auto", max_length: int | None = None, base_url: str | None = None,
    tokenizer: str | None = None, trust_remote_code: bool = False, **backend_extra: Any,
) -> EvalOptions:
    """EvalOptions from flag values; `tasks` may be the comma-separated --tasks text or a sequence."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions

    check_parallel(backend, backend_extra)
    if isinstance(tasks, str):
        tasks = tuple(t.strip() for t in tasks.split(",") if t.strip()) or None
    elif tasks:
        tasks = tuple(tasks)
    bo = BackendOptions(batch_size=batch_size_value(batch_size), device=device, dtype=dtype, max_length=max_length,
                        trust_remote_code=trust_remote_code, base_url=base_url, tokenizer=tokenizer, **backend_extra)
    opts = EvalOptions(split=split, backend=backend, limit=limit, tier=tier, tasks=tasks or None, seed=seed,
                       rerun=rerun, use_cache=use_cache, serve=serve, hub=hub, backend_options=bo)
    check_backend(opts)
    return opts


def check_backend(opts: EvalOptions) -> None:
    """What is wrong with the backend options whatever the model (an unknown backend, --serve off the openai
    backend, openai without an endpoint): refused before a model is registered or a run row written."""
    from harness.errors import HarnessError
    from harness.evaluate.backends import get_backend

    get_backend(opts.backend)
    if opts.serve and opts.backend != "openai":
        raise HarnessError("--serve works with --backend openai only", "add --backend openai or drop --serve")
    if opts.backend == "openai":
        from harness.evaluate.backends.openai import require_endpoint

        require_endpoint(opts.backend_options.base_url, opts.serve)


VLLM_ONLY = {"tensor_parallel_size": 1, "data_parallel_size": 1, "gpu_memory_utilization": None}


def check_parallel(backend: str, extra: dict[str, Any]) -> None:
    """vLLM's engine settings: refused on other backends (they would be silently ignored) and out of range."""
    from harness.errors import HarnessError

    for key, default in VLLM_ONLY.items():
        value, flag = extra.get(key, default), "--" + key.replace("_", "-")
        if value == default:
            continue
        if backend != "vllm":
            raise HarnessError(f"{flag} is a vLLM engine setting; the {backend} backend would ignore it",
                               f"add --backend vllm, or drop {flag}")
        if key == "gpu_memory_utilization" and not 0 < float(value) <= 1:
            raise HarnessError(f"{flag} {value} is not a share of the GPU's memory", f"give {flag} in (0, 1]")
        if key != "gpu_memory_utilization" and int(value) < 1:
            raise HarnessError(f"{flag} {value} is below 1", f"give {flag} 1 or more")


def evolve_eval_options(cfg: Any) -> EvalOptions:
    """The options of an evolve run's final evaluations (its config's backend, batch size and dtype)."""
    return eval_options(backend=cfg.backend, batch_size=cfg.batch_size, dtype=cfg.dtype)


def stored_options(d: dict[str, Any], device: str | None = None, base_url: str | None = None) -> EvalOptions:
    """The options a baseline file recorded (see harness.workflows.baseline.options_dict)."""
    bo = dict(d["backend_options"])
    return eval_options(split=d["split"], backend=d["backend"], limit=d["limit"], tier=d["tier"], tasks=d["tasks"],
                        seed=d["seed"], device=device, base_url=base_url, **bo)
