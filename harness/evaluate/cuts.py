"""Requests cut to fit the model's context: counted per task from a run's own requests, as its backend cuts them.

lm-eval cuts a request longer than the context from its start, with a log warning and no count, on every backend.
A run counts them here from the requests lm-eval made (`CachedLM` keeps them, so answers from the request cache
count alike), tokenized as lm-eval tokenizes them, against the limit each backend applies (lm-eval 0.4.13,
lm_eval/models/):

    backend   context L without --max-length                   loglikelihood cut when   generation cut when
    hf        resolve_max_length(config, tokenizer) (HFLM)     ctx + cont > L + 1       ctx > L - max_gen_toks
    vllm      the engine's max_model_len (here: as hf)         ctx + cont > L - 1       ctx > L - max_gen_toks
    ensemble  the members' smallest max_position_embeddings    ctx + cont > L + 1       ctx > L - max_gen_toks
    openai    backends/openai.model_context (as hf)            ctx + cont > L - 1       ctx > L - 1 - max_gen_toks

A chat run on openai sends text, which lm-eval does not cut (the server may refuse it): its generations count 0.
loglikelihood_rolling requests are scored in windows, never cut. The ensemble's generation slides its window, so a
prompt counts as cut when it and its max_gen_toks exceed L (the hf rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from harness.store.records import TaskCuts, cut_sentence

if TYPE_CHECKING:
    from harness.evaluate.backends.base import BackendOptions, ModelTarget

DEFAULT_GEN_TOKS = 256  # lm-eval's default max_gen_toks on every backend
SURE_MARGIN = 8  # tokens a text may add beyond one per character: a word-start prefix, BOS/EOS (see _short)


def context_length(backend: str, target: ModelTarget, bo: BackendOptions) -> int:
    """The context (tokens) lm-eval's model for this backend cuts requests to: --max-length, else the model's."""
    if bo.max_length:
        return int(bo.max_length)
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoConfig

    if backend == "openai":
        from harness.evaluate.backends.openai import model_context

        return model_context(target, bo.tokenizer or str(target.path), bo.trust_remote_code)
    if backend == "ensemble":
        from harness.evaluate.backends.ensemble import members_of

        return min(AutoConfig.from_pretrained(p).max_position_embeddings for p, _ in members_of(target.path))
    config = AutoConfig.from_pretrained(str(target.path), trust_remote_code=bo.trust_remote_code)
    return resolve_max_length(config, _tokenizer(target, bo), default=2048)  # HFLM's and VLLM's default


def _tokenizer(target: ModelTarget, bo: BackendOptions) -> Any:
    from transformers import AutoTokenizer

    folder = bo.tokenizer or str(target.path)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=bo.trust_remote_code)


def limits(backend: str, context: int, chat: bool) -> tuple[int, int | None]:
    """(the longest context + continuation a loglikelihood request keeps whole, the number G such that a generation
    context is cut when it is longer than G - max_gen_toks; None: never cut)."""
    if backend in ("vllm", "openai"):
        top = context - 1  # vLLM keeps one position to generate; lm-eval's API models set max_length - 1
        return top, None if (backend == "openai" and chat) else (top if backend == "openai" else context)
    return context + 1, context  # HFLM keeps the last max_length + 1 tokens (the last is the one predicted)


def gen_tokens(backend: str, gen_kwargs: dict[str, Any]) -> int:
    """max_gen_toks as the backend reads it from a request's generation arguments."""
    if backend == "openai":
        return int(gen_kwargs.get("max_gen_toks", DEFAULT_GEN_TOKS))
    from lm_eval.models.utils import normalize_gen_kwargs

    return int(normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_GEN_TOKS)["max_gen_toks"])


class _Lengths:
    """Token counts of texts as lm-eval's tok_encode gives them (BOS as the run decided it), memoised."""

    def __init__(self, load: Callable[[], Any], add_bos: bool | None, backend: str) -> None:
        self.load, self.add_bos, self.backend = load, add_bos, backend
        self.tok: Any = None  # loaded when a text needs tokenizing
        self.known: dict[tuple[str, bool], int] = {}

    def _special(self, text: str, special: bool) -> bool | None:
        if not special:
            return False
        if self.backend == "openai":
            return bool(self.add_bos)
        if self.tok.bos_token is not None and text.startswith(self.tok.bos_token):
            return False  # HFLM's has_bos_prefix
        return self.add_bos

    def fill(self, texts: Iterable[tuple[str, bool]]) -> None:
        todo = sorted({t for t in texts if t not in self.known})
        if todo and self.tok is None:
            self.tok = self.load()
        for special in (True, False):
            for flag in {self._special(s, special) for s, sp in todo if sp == special}:
                batch = [s for s, sp in todo if sp == special and self._special(s, special) == flag]
                kw = {} if flag is None else {"add_special_tokens": flag}
                for s, ids in zip(batch, self.tok(batch, return_attention_mask=False, **kw).input_ids, strict=True):
                    self.known[(s, special)] = len(ids)

    def __getitem__(self, key: tuple[str, bool]) -> int:
        return self.known[key]


def _ll_texts(context: str, continuation: str) -> list[tuple[str, bool]]:
    """The texts lm-eval tokenizes for a loglikelihood request (TemplateLM.loglikelihood, _encode_pair)."""
    if context == "":
        return [(continuation, False)]
    return [(context.rstrip(), True), (context + continuation, True)]  # trailing spaces go to the continuation


def _ll_length(lengths: _Lengths, context: str, continuation: str) -> int:
    """Tokens of context + continuation as lm-eval passes them to _loglikelihood_tokens."""
    if context == "":
        return lengths[(continuation, False)] + 1  # the prefix token (or the continuation's first, split off)
    ctx, whole = (lengths[t] for t in _ll_texts(context, continuation))
    return max(ctx, whole)  # context_enc + whole[len(context_enc):]


def _short(text: str, room: int) -> bool:
    """Surely at most `room` tokens, untokenized: ASCII text (which no normaliser lengthens) makes at most one token
    per character with any tokenizer, plus SURE_MARGIN for a word-start prefix and special tokens."""
    return len(text) + SURE_MARGIN <= room and text.isascii()


def _ll_cut(lengths: _Lengths, context: str, continuation: str, top: int) -> bool:
    if _short(context + continuation, top):
        return False
    if context and lengths[(context.rstrip(), True)] > top:
        return True  # the context alone is over: lm-eval's total is at least its tokens
    return _ll_length(lengths, context, continuation) > top


def count_cuts(requests: list[tuple[str, str, tuple[Any, ...]]], backend: str, target: ModelTarget,
               bo: BackendOptions) -> list[TaskCuts]:
    """Per task (in first-seen order): its requests and those cut, from (method, task, arguments) triples; [] (not
    counted) without requests or a tokenizer to count with (an endpoint with no --tokenizer). Only texts that might
    be over are tokenized (`_short`), contexts first, each once."""
    if not requests or not (bo.tokenizer or target.path):
        return []
    context = context_length(backend, target, bo)
    ll_top, gen_base = limits(backend, context, bo.chat)
    lengths = _Lengths(lambda: _tokenizer(target, bo), bo.add_bos_token, backend)
    ll = [a for m, _, a in requests if m == "loglikelihood" and not _short(a[0] + a[1], ll_top)]
    lengths.fill((a[0].rstrip(), True) for a in ll if a[0])
    lengths.fill(t for a in ll if not a[0] or lengths[(a[0].rstrip(), True)] <= ll_top for t in _ll_texts(*a[:2]))
    gen = [m == "generate_until" and gen_base is not None and gen_base - gen_tokens(backend, a[1]) for m, _, a in
           requests]
    lengths.fill((a[0], True) for (_, _, a), room in zip(requests, gen, strict=True)
                 if room is not False and not _short(a[0], room))
    rows: dict[str, list[int]] = {}
    for (method, task, args), room in zip(requests, gen, strict=True):
        row = rows.setdefault(task, [0, 0, 0])
        row[0] += 1
        if method == "loglikelihood":
            row[1] += _ll_cut(lengths, args[0], args[1], ll_top)
        elif room is not False:
            row[2] += not _short(args[0], room) and lengths[(args[0], True)] > room
    return [TaskCuts(task, context, n, ll, gen) for task, (n, ll, gen) in rows.items()]


def remembered_cuts(requests: list[tuple[str, str, tuple[Any, ...]]], backend: str, target: ModelTarget,
                    bo: BackendOptions, answers: list[Any]) -> list[TaskCuts]:
    """count_cuts, remembered under results/cache/cuts.json by what keys the run's cached answers (`answers`: model,
    backend, answer settings, engines), the tokenizer's engine and the requests themselves: a re-run answered from
    the request cache counts without loading a tokenizer (or torch)."""
    from harness.evaluate.backends.base import package_version
    from harness.hashing import hash_json
    from harness.identity import memo

    key = hash_json(["cuts", answers, package_version("transformers"), package_version("tokenizers"), requests])
    known = memo("cuts").get(key)
    if known is not None:
        return [TaskCuts(*row) for row in known]
    cuts = count_cuts(requests, backend, target, bo)
    memo("cuts", key, [[c.task, c.context, c.requests, c.loglikelihood, c.generate] for c in cuts])
    return cuts


def cut_warning(cuts: Iterable[TaskCuts]) -> str | None:
    """The one line a run with cut requests prints (None when none was cut, or nothing was counted)."""
    cuts = list(cuts)
    cut = sum(c.cut for c in cuts)
    if not cut:
        return None
    worst = sorted((c for c in cuts if c.cut), key=lambda c: (-c.cut, c.task))
    where = ", ".join(f"{c.task} {c.cut}" for c in worst[:3]) + (f", {len(worst) - 3} more" if len(worst) > 3 else "")
    return f"warning: {cut_sentence(cut, sum(c.requests for c in cuts), (c.context for c in cuts))} ({where})"
