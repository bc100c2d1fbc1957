"""Per-request caching of model answers, so re-runs are nearly free and killed runs resume.

One SQLite file per (model content hash, backend, answer-changing settings) under results/cache/requests/.
Keys are lm-eval's own request hashes (`hash_args(method, request.args)`). Answers are written as the model
produces them (through lm-eval's cache hook, committed every `flush_every` seconds) and again for every request
when a call returns, so a run killed halfway loses at most the last few seconds of work.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from harness.hashing import hash_json
from harness.paths import cache_dir

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM

    from harness.evaluate.progress import RequestProgress

METHODS = ("loglikelihood", "loglikelihood_rolling", "generate_until")


def cache_path(model_id: str, backend: str, settings: dict[str, Any]) -> Path:
    return cache_dir() / "requests" / f"{model_id[:16]}-{backend}-{hash_json(settings)[:12]}.kv.sqlite"


def _encode(method: str, answer: Any) -> str:
    """JSON for an answer; ValueError for a non-finite log-likelihood, which is never cached."""
    if method == "loglikelihood":
        ll, greedy = answer
        return json.dumps([float(ll), bool(greedy)], allow_nan=False)
    if method == "loglikelihood_rolling":
        return json.dumps(float(answer), allow_nan=False)
    return json.dumps(answer)


def first_nonfinite(method: str, answers: list[Any]) -> int | None:
    """The index of the first answer whose log-likelihood is NaN or inf (None: all finite, or generations)."""
    import math

    if method not in ("loglikelihood", "loglikelihood_rolling"):
        return None
    for i, ans in enumerate(answers):
        ll = ans[0] if method == "loglikelihood" else ans
        if not math.isfinite(float(ll)):
            return i
    return None


def _nonfinite_error(label: str, method: str, requests: list[Instance], i: int, answer: Any) -> Exception:
    from harness.errors import HarnessError

    req = requests[i]
    context = str(req.args[0])[-60:] if req.args else ""
    return HarnessError(
        f"model {label} gave a non-finite log-likelihood ({answer}) for {req.task_name} doc {req.doc_id} "
        f"({method}, context ...{context!r})",
        "the model's weights or dtype overflow: try --dtype float32, or check the model; nothing was stored")


def samples(gen_kwargs: dict[str, Any]) -> bool:
    """Whether a generation is sampled: do_sample, or when that is not given a temperature above 0 (lm-eval's
    `normalize_gen_kwargs` for hf and vllm; an OpenAI-compatible server samples at any temperature above 0)."""
    do_sample = gen_kwargs.get("do_sample")
    if do_sample is not None:
        return bool(do_sample)
    return float(gen_kwargs.get("temperature") or 0.0) > 0.0


def _decode(method: str, text: str) -> Any:
    value = json.loads(text)
    return tuple(value) if method == "loglikelihood" else value


class RequestCache:
    """Request hash -> answer (a harness.store.kv file), with buffered writes."""

    def __init__(self, path: Path, flush_every: float = 1.0) -> None:
        from harness.store.kv import KVFile

        self.path = path
        self.kv = KVFile(path, table="answers")
        self.flush_every = flush_every
        self._pending: dict[str, str] = {}
        self._last_flush = time.monotonic()
        self.hits = 0
        self.misses = 0

    def get_many(self, method: str, keys: list[str]) -> dict[str, Any]:
        return {k: _decode(method, a) for k, a in self.kv.get_many(keys).items()}

    def put(self, method: str, key: str, answer: Any) -> None:
        try:
            self._pending[key] = _encode(method, answer)
        except ValueError:
            return  # a non-finite answer: the run fails on it and it is not kept
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        self.kv.put_many(self._pending)
        self._pending.clear()
        self._last_flush = time.monotonic()

    def __len__(self) -> int:
        return len(self.kv)

    def close(self) -> None:
        self.flush()
        self.kv.close()


class _Hook:
    """Stands in for lm-eval's CacheHook: backends call add_partial as answers come out."""

    def __init__(self, cache: RequestCache | None, progress: RequestProgress | None) -> None:
        self.cache = cache
        self.progress = progress

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        from lm_eval.api.model import hash_args

        if self.progress is not None:
            self.progress.advance(1)
        if self.cache is None:
            return
        try:
            self.cache.put(attr, hash_args(attr, req), res)
        except (TypeError, ValueError):
            pass  # an answer we cannot serialise is simply not cached early


def _call(lm: LM, method: str, requests: list[Instance], quiet: bool) -> list[Any]:
    """lm.<method>(requests), without the backend's own tqdm bar when we draw one or TQDM_DISABLE asks for none."""
    fn = getattr(lm, method)
    quiet = quiet or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
    return (without_bar(fn) if quiet else fn)(requests)


def without_bar(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An LM request method (loglikelihood, generate_until, ...) that draws no tqdm bar. lm-eval passes
    `disable=disable_tqdm` to tqdm explicitly, and an explicit argument wins over TQDM_DISABLE, so only the
    method's own `disable_tqdm` silences it; a method without one is returned as it is."""
    import functools

    return functools.partial(fn, disable_tqdm=True) if "disable_tqdm" in inspect.signature(fn).parameters else fn


_NOT_WHILE_LAZY = frozenset({"MULTIMODAL", "tokenizer", "eot_token_id", "max_length", "get_model_info",
                             "batch_sizes", "_model", "model"})


def cached_lm(
    build: Callable[[], LM], cache: RequestCache | None, name: str = "", progress: RequestProgress | None = None,
    label: str = "",
) -> LM:
    """An lm-eval LM (so simple_evaluate takes it) that answers from `cache` first and builds the real model
    with `build()` only when some request is not cached: a fully cached re-run never loads the model.
    `name` stands in for the model config's `_name_or_path` (what lm-eval records) until the model is built;
    `progress` hears of every batch of requests and of every answer. A non-finite log-likelihood fails the run
    with a HarnessError naming `label` (the model) and the first such request."""
    from lm_eval.api.model import LM, hash_args

    class CachedLM(LM):
        def __init__(self) -> None:
            super().__init__()
            self._inner: LM | None = None
            self.hits = 0  # requests answered from the cache
            self.misses = 0  # requests the model answered (all of them without a cache)
            self.seen: list[tuple[str, str, tuple[Any, ...]]] = []  # (method, task, arguments) of every request

        @property
        def inner(self) -> LM:
            if self._inner is None:
                self._inner = build()
                if cache is not None or progress is not None:
                    self._inner.set_cache_hook(_Hook(cache, progress))  # type: ignore[arg-type]
            return self._inner

        @property
        def built(self) -> bool:
            return self._inner is not None

        def __getattr__(self, attr: str) -> Any:  # everything else is the inner model's
            own = attr.startswith("__") or attr in ("_inner", "hits", "misses", "seen")
            if own or (attr in _NOT_WHILE_LAZY and self._inner is None):
                raise AttributeError(attr)
            return getattr(self.inner, attr)

        def _answer(self, method: str, requests: list[Instance]) -> list[Any]:
            self.seen += [(method, r.task_name, r.args) for r in requests]  # cached or not: cuts.py counts them
            answers = self._answers(method, requests)
            bad = first_nonfinite(method, answers)
            if bad is not None:
                raise _nonfinite_error(label or name, method, requests, bad, answers[bad])
            return answers

        def _answers(self, method: str, requests: list[Instance]) -> list[Any]:
            if cache is None:
                self.misses += len(requests)
                if progress is not None:
                    progress.requests(method, len(requests), 0)
                answers = _call(self.inner, method, requests, progress is not None)
                if progress is not None:
                    progress.finished()
                return answers
            keys = [hash_args(method, r.args) for r in requests]
            sampled = [method == "generate_until" and samples(r.args[1]) for r in requests]
            found = cache.get_many(method, [k for k, s in zip(keys, sampled, strict=True) if not s])
            todo = [i for i, (k, s) in enumerate(zip(keys, sampled, strict=True)) if s or k not in found]
            cache.hits += len(requests) - len(todo)
            cache.misses += len(todo)
            self.hits += len(requests) - len(todo)
            self.misses += len(todo)
            answers = [found.get(k) for k in keys]
            if progress is not None:
                progress.requests(method, len(requests), len(requests) - len(todo))
            if todo:
                fresh = _call(self.inner, method, [requests[i] for i in todo], progress is not None)
                for i, ans in zip(todo, fresh, strict=True):
                    answers[i] = ans
                    if not sampled[i]:
                        cache.put(method, keys[i], ans)
            cache.flush()
            if progress is not None:
                progress.finished()
            return answers

        def loglikelihood(self, requests: list[Instance], *args: Any, **kw: Any) -> list[Any]:
            return self._answer("loglikelihood", requests)

        def loglikelihood_rolling(self, requests: list[Instance], *args: Any, **kw: Any) -> list[Any]:
            return self._answer("loglikelihood_rolling", requests)

        def generate_until(self, requests: list[Instance], *args: Any, **kw: Any) -> list[Any]:
            return self._answer("generate_until", requests)

        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            return self.inner.apply_chat_template(chat_history, add_generation_prompt)

        @property
        def tokenizer_name(self) -> str:
            return self.inner.tokenizer_name

        def chat_template(self, chat_template: bool | str = False) -> str | None:
            return self.inner.chat_template(chat_template)

        @property
        def config(self) -> Any:
            if self._inner is None:
                return SimpleNamespace(_name_or_path=name)
            return self._inner.config

        @property
        def rank(self) -> int:
            return self._inner.rank if self._inner is not None else 0

        @property
        def world_size(self) -> int:
            return self._inner.world_size if self._inner is not None else 1

        @property
        def device(self) -> Any:
            return self._inner.device if self._inner is not None else None

    return CachedLM()
