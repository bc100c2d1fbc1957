"""How a run's failures read: one line naming the problem and the fix (out of memory, a model that won't load,
a context too short, a dead endpoint, the hub out of reach, a non-finite score)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.evaluate.backends.base import ModelTarget
    from harness.evaluate.plan import Plan
    from harness.evaluate.runner import EvalOptions
    from harness.store.records import Score


def one_line(exc: BaseException) -> str:
    if isinstance(exc, HarnessError):
        return exc.line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def as_harness_error(exc: Exception, target: ModelTarget, opts: EvalOptions, stage: str) -> HarnessError:
    if isinstance(exc, HarnessError):
        return exc
    kind = type(exc).__name__
    if isinstance(exc, MemoryError) or "OutOfMemory" in kind or "out of memory" in str(exc).lower():
        return HarnessError(f"out of memory evaluating {target.name} with {opts.backend}",
                            "lower --batch-size, use --dtype bfloat16, or a device with more memory", exit_code=3)
    if stage == "load":
        return HarnessError(f"model {target.name} won't load with {opts.backend}: {one_line(exc)}",
                            "check the folder (config.json, weights, tokenizer) or try another --backend")
    if "maximum sequence length" in str(exc):
        return HarnessError(f"evaluating {target.name}: {one_line(exc).split(': ', 1)[-1]}",
                            "this suite's prompts and answers need a longer context than the model's: use a model "
                            "with a longer one, or --max-length N if its position embeddings allow it")
    if opts.backend == "openai":
        return HarnessError(f"the endpoint {opts.backend_options.base_url} failed during the run: {one_line(exc)}",
                            "check the server (its log); re-running resumes from the request cache", exit_code=3)
    return HarnessError(f"evaluating {target.name} failed: {one_line(exc)}", "rerun with --debug", exit_code=1)


def check_finite_scores(target: ModelTarget, scores: list[Score]) -> None:
    import math

    bad = next((s for s in scores if s.value is not None and not math.isfinite(s.value)), None)
    if bad is not None:
        raise HarnessError(f"evaluating {target.name} gave a non-finite score ({bad.task} {bad.metric} = {bad.value})",
                           "check the model's outputs (rerun with --limit 5 --debug); nothing was stored")


def hub_error(why: str, plan: Plan) -> HarnessError:
    return HarnessError(f"--hub: lm-eval's {', '.join(plan.tasks)} could not be read from the Hugging Face hub "
                        f"({why})",
                        f"run without --hub to use the data shipped in suites/{plan.suite.name}/, or run where the "
                        "hub is reachable (unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)", exit_code=3)


def check_hub(plan: Plan) -> None:
    """Fail in seconds, not after the hub client's minute of retries, when the hub is off or out of reach."""
    import socket
    from urllib.parse import urlparse

    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "0") not in ("", "0")]
    if offline:
        raise hub_error(f"{' and '.join(offline)} {'are' if len(offline) > 1 else 'is'} set", plan)
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=5).close()
    except OSError as exc:
        raise hub_error(f"{url.hostname} is unreachable: {exc}", plan) from None
