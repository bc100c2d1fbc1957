"""The request plan cache: a suite split's rendered requests, built once and reused by every later model.

lm-eval renders each task's requests (few-shot contexts, continuations, generation arguments) for every run, yet
they depend only on the task's data and config, the few-shot seed, the limit and lm-eval itself, not on the model
(harness applies no chat template on these paths; a run that does bypasses this cache). `request_plans(parts)`
installs, for the length of a run, a `Task.build_all_requests` that answers from

    results/cache/request_plans.kv.sqlite    key = hash(parts, task config, build arguments) -> instances (JSON)

`parts` names the suite, its version, split, data hash and the seed. Each entry records the lm-eval and datasets
versions that wrote it: an entry written by another version is ignored and rebuilt (and overwritten), never reused.
A task whose requests do not survive JSON unchanged is simply not cached. Per-model work (forward passes, scoring)
is untouched: results are the same, sample for sample, as without the cache (tests/test_request_plan.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.hashing import hash_json
from harness.paths import cache_dir


@dataclass
class PlanStats:
    reused: int = 0  # tasks whose requests came from the cache
    built: int = 0  # tasks whose requests lm-eval rendered


def made_by() -> dict[str, str]:
    """What decides how lm-eval renders requests besides the task and data: its version and datasets'."""
    from harness.evaluate.backends.base import package_version

    return {"lm_eval": package_version("lm_eval"), "datasets": package_version("datasets")}


def plans_path() -> Any:
    return cache_dir() / "request_plans.kv.sqlite"


def _encode(instances: list[Any]) -> str | None:
    """JSON for lm-eval Instances, or None when one would not come back unchanged."""
    rows = [[i.request_type, i.doc, list(i.arguments) if isinstance(i.arguments, tuple) else i.arguments, i.idx,
             list(i.metadata)] for i in instances]
    try:
        text = json.dumps(rows, allow_nan=False)
    except (TypeError, ValueError):
        return None
    back = _decode(text)
    same = all(a.doc == b.doc and a.arguments == b.arguments and a.metadata == b.metadata
               for a, b in zip(instances, back, strict=True))
    return text if same else None


def _decode(text: str) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc=doc, arguments=tuple(args) if isinstance(args, list) else args,
                     idx=idx, metadata=tuple(meta))
            for kind, doc, args, idx, meta in json.loads(text)]


def entry_key(parts: dict[str, Any], task_config: dict[str, Any], build: dict[str, Any]) -> str:
    """The task's whole config (templates, few-shot settings; functions by their source) is part of the key."""
    return hash_json(["request_plan", parts, _by_source(task_config), build])


def _by_source(value: Any) -> Any:
    """`value` with every function as its source, as lm-eval's `TaskConfig.to_dict` gives the top-level ones: it
    leaves those inside `fewshot_config` as objects, whose str() is their memory address, new in every process."""
    if isinstance(value, dict):
        return {k: _by_source(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_by_source(v) for v in value]
    if callable(value):
        try:
            return inspect.getsource(value)
        except (TypeError, OSError):
            return str(value)
    return value


def _build_arguments(kw: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments of build_all_requests that change its output, or None when this cache does not apply."""
    if kw.get("apply_chat_template") or kw.get("cache_requests") or kw.get("samples") is not None:
        return None
    return {"limit": kw.get("limit"), "rank": kw.get("rank", 0), "world_size": kw.get("world_size", 1),
            "system_instruction": kw.get("system_instruction"),
            "fewshot_as_multiturn": bool(kw.get("fewshot_as_multiturn"))}


def _lookup(kv: Any, key: str, versions: dict[str, str]) -> list[Any] | None:
    found = kv.get_many([key]).get(key)
    if found is None:
        return None
    try:
        entry = json.loads(found)
        if entry.get("made_by") != versions:
            return None  # written by another lm-eval or datasets: rebuilt below
        return _decode(entry["instances"]) or None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged entry: rebuilt and overwritten


@contextmanager
def request_plans(parts: dict[str, Any]) -> Iterator[PlanStats]:
    """For the length of the block, lm-eval tasks take their rendered requests from the plan cache."""
    from lm_eval.api.task import Task

    from harness.store.kv import KVFile

    stats, versions = PlanStats(), made_by()
    kv = KVFile(plans_path(), table="plans")
    real = Task.build_all_requests

    def build_all_requests(self: Any, **kw: Any) -> None:
        build = _build_arguments(kw)
        if build is None:
            return real(self, **kw)
        key = entry_key(parts, self.config.to_dict(), build)
        instances = _lookup(kv, key, versions)
        if instances is not None:
            self._instances = instances
            stats.reused += 1
            return None
        real(self, **kw)
        stats.built += 1
        text = _encode(self._instances)
        if text is not None:
            kv.put_many({key: json.dumps({"made_by": versions, "instances": text})})
        return None

    Task.build_all_requests = build_all_requests  # type: ignore[method-assign]
    try:
        yield stats
    finally:
        Task.build_all_requests = real  # type: ignore[method-assign]
        kv.close()
