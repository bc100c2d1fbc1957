"""What decides a run's scores, and a model's answers: the run id and the request cache's key.

    settings = score_settings(plan, opts, bo)                 # part of the run id (batch size, device are not)
    run_id = run_id_for(target, plan, backend, settings)      # a re-run of the same settings finds its work
    cache = answer_cache_path(model_id, backend, settings)    # keyed by answer_settings and engine_versions

BOS is decided once per model (resolve_bos) and passed to every backend alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.evaluate.backends import get_backend
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version
from harness.evaluate.plan import HUB_SPLIT, Plan
from harness.hashing import hash_json

if TYPE_CHECKING:
    from harness.evaluate.runner import EvalOptions

LM_EVAL_BOOTSTRAP_ITERS = 1000


def resolve_bos(target: ModelTarget, options: BackendOptions) -> bool | None:
    """Whether this model's tokenizer adds BOS by default: decided once, passed to every backend alike.

    Remembered per model id and tokenizer under results/cache/, so a re-run does not load the tokenizer."""
    if options.add_bos_token is not None:
        return options.add_bos_token
    folder = options.tokenizer or (str(target.path) if target.path else None)
    if folder is None:
        return None
    from harness.identity import memo

    key = hash_json(["bos", target.model_id, folder])
    known = memo("bos").get(key)
    if known is not None:
        return bool(known)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=options.trust_remote_code)
    except Exception:  # noqa: BLE001 - a broken folder fails (and is recorded) when the backend loads it
        return None
    ids = tok("a b").input_ids
    adds = bool(tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id)
    memo("bos", key, adds)
    return adds


def score_settings(plan: Plan, opts: EvalOptions, bo: BackendOptions) -> dict[str, Any]:
    """The settings that can change scores: part of the run id (batch size and device are not)."""
    return {
        "tasks": list(plan.tasks), "limit": plan.limit, "seed": opts.seed, "dtype": bo.dtype,
        "add_bos_token": bo.add_bos_token, "max_length": bo.max_length, "chat": bo.chat,
        "num_fewshot": None, "lm_eval_bootstrap_iters": LM_EVAL_BOOTSTRAP_ITERS,
        **({"lm_eval_tasks": package_version("lm_eval")} if plan.split == HUB_SPLIT else {}),  # tasks live there
        **({"task_definitions": plan.suite.definition_hash(plan.tasks)} if plan.split != HUB_SPLIT else {}),
        **({"samples": {t: list(d) for t, d in plan.samples}} if plan.samples else {}),  # a paired tier sample
        **({"tokenizer": tokenizer_id(bo.tokenizer)} if bo.tokenizer else {}),  # openai: it makes the token ids
    }


def tokenizer_id(tokenizer: str) -> str:
    """A --tokenizer folder by its content (as a model folder is), anything else by its name."""
    from harness.identity import model_id

    return model_id(Path(tokenizer)) if Path(tokenizer).is_dir() else tokenizer


def answer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The run settings that change a model's answer to a request: they key its request cache."""
    return {k: settings[k] for k in ("dtype", "add_bos_token", "max_length", "chat", "tokenizer") if k in settings}


def answer_cache_path(model_id: str, backend: str, settings: dict[str, Any]) -> Path:
    """The request cache of a model's answers: keyed by its answer settings and by the engines that answer (lm-eval,
    which tokenizes and scores; the backend's transformers and torch, or vLLM): an answer cached by another version
    of them is never read (a `--rerun` after an upgrade computes every answer again)."""
    from harness.evaluate.request_cache import cache_path

    return cache_path(model_id, backend, {**answer_settings(settings), "engines": engine_versions(backend)})


def engine_versions(backend: str) -> str:
    """The versions of what turns a model into scores: lm-eval (tokenizes and scores) and the backend's engine
    (transformers and torch, or vLLM), as the backend's version names them ('lm_eval 0.4.13; transformers 5.0.0,
    torch 2.8.0'), the one a run records. Every cache of answers or scores is keyed by them."""
    return get_backend(backend).version()


def run_id_for(target: ModelTarget, plan: Plan, backend: str, settings: dict[str, Any]) -> str:
    key = {"model": target.model_id, "suite": plan.suite.name, "suite_version": str(plan.suite.version),
           "split": plan.split, "data_hash": plan.data_hash, "backend": backend, "settings": settings}
    return "r" + hash_json(key)[:19]
