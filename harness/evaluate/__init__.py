"""Evaluation: lm-eval is the engine; harness adds backends, request caching, resume, stats and the store.

    from harness.evaluate import evaluate_model
    result = evaluate_model("path/to/model", "zoo_math", split="public", backend="hf", limit=20)

Importing this package is cheap; torch, lm_eval and vllm load only when a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.evaluate.runner import EvalOptions, RunResult, evaluate_model, evaluate_models

__all__ = ["EvalOptions", "RunResult", "evaluate_model", "evaluate_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.evaluate import runner

        return getattr(runner, name)
    raise AttributeError(name)
