"""Log-likelihoods at the cost of the continuation, for lm-eval's HFLM (the hf backend).

lm-eval's `HFLM._loglikelihood_tokens` runs each (context + continuation) through the model, applies the LM head
and a full-vocabulary log-softmax at every position of a padded batch (16 x ~1,000 x 49,152 floats for a 5-shot
mmlu batch of a SmolLM2: 18.8 GB peak), and keeps only the continuation's positions. Here, with the same inputs:

- requests are grouped by context; a context runs once for all its continuations;
- the head is applied only where a continuation is scored (`logits_to_keep`, the model's own head code);
- continuations of one token (multiple choice with letters): the contexts of many groups share one right-padded
  forward (no attention mask, as lm-eval's), and each row's last position is read;
- contexts that begin with the same long run of tokens (a few-shot prompt: mmlu's 5 dev examples are the same for
  every question of a subject) run that shared prefix once with a KV cache; their own remainders then run on top
  of copies of it, right-padded, in bounded batches (`prefix_groups`, `Scorer.shared_last_logprobs`);
- longer continuations: the context runs once with a KV cache (after a copy of the cache of a prefix it shares
  with other contexts, as above), then all its continuations run on top of it, right-padded, in chunks of
  positions;
- a forward never holds more than `TOKENS_PER_FORWARD` padded tokens or `LOGITS_PER_FORWARD` head outputs, nor on
  a shared prefix more than `CACHED_TOKENS` rows x (prefix + remainder) positions, so the memory is bounded by
  construction, whatever the batch size asked for (which still caps the rows).

Requests lm-eval would truncate (context + continuation longer than the model's window), models whose forward takes
no `logits_to_keep` and models whose own cache cannot be repeated across rows (Mamba's state, the linear-attention
layers of hybrids: `_repeatable`) go through lm-eval's own code (a shared prefix such a model's contexts have is
simply not shared). Scores equal lm-eval's per request
(tests/test_hf_scoring.py: identical on SmolLM2's 0-shot mmlu requests; on 5-shot ones and sums over many tokens
within the float32 spread lm-eval shows against itself across batch sizes; identical greedy flags), and on tiny
Qwen2, Mistral and Gemma2 (sliding windows of 16 tokens under 5-shot prompts), Phi-3, GPT-2, GPT-NeoX, Falcon,
FalconMamba and LFM2 (tests/test_architectures.py).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from lm_eval.models.huggingface import HFLM

from harness.errors import HarnessError

Request = tuple[Any, list[int], list[int]]  # (cache key, context tokens, continuation tokens), as HFLM gets them
Answer = tuple[float, bool]
TOKENS_PER_FORWARD = 4096  # padded tokens in one forward
LOGITS_PER_FORWARD = 2**24  # head outputs (positions x vocabulary) in one forward: 64 MB of float32
CACHED_TOKENS = 2 * TOKENS_PER_FORWARD  # rows x (shared prefix + remainder) attended in one forward on a prefix
MIN_SHARED = 64  # contexts share a prefix run once only from this many tokens, and only when it is as long as the
# rest on average (a 0-shot mmlu description, ~20 tokens before a question, is not shared; a 5-shot prompt is)


class ContinuationHFLM(HFLM):
    """lm-eval's HFLM with `_loglikelihood_tokens` computed at the cost of the continuation (see module doc)."""

    def _loglikelihood_tokens(self, requests: Sequence[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[Answer]:  # type: ignore[override]
        empty = next((r for r in requests if not r[2]), None)
        if empty is not None:  # lm-eval's own code stops on it with a bare AssertionError
            raise empty_answer(type(self.tokenizer).__name__, empty[0])
        if self.backend != "causal" or not _takes_logits_to_keep(self.model):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)  # type: ignore[arg-type]
        rows = self.batch_size if isinstance(self.batch_size, int) else 16
        scorer = Scorer(self.model, self.device, self.mixed_precision_dtype, self.softmax_dtype, max(1, rows))
        fallback: list[int] = []

        def done(i: int, answer: Answer) -> None:  # as each is computed: a killed run keeps what it had
            if requests[i][0] is not None:
                self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)

        answers = scorer.score(list(requests), self.max_length, fallback, done)
        if fallback:  # lm-eval's own code tells the cache hook of these
            slow = super()._loglikelihood_tokens([requests[i] for i in fallback], True, override_bs)
            answers.update(zip(fallback, slow, strict=True))
        return [answers[i] for i in range(len(requests))]


def empty_answer(tokenizer: str, key: Any) -> HarnessError:
    answer = f" {key[1]!r}" if isinstance(key, tuple) and len(key) == 2 else ""
    return HarnessError(
        f"the answer{answer} encodes to no tokens with the model's tokenizer ({tokenizer})",
        "check that the folder's tokenizer loads as intended (AutoTokenizer; transformers loads a model_type qwen2 "
        "folder's as Qwen2Tokenizer whatever tokenizer_config.json says)")


def _takes_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


class Scorer:
    """Scores (context, continuation) token requests with one model, in bounded memory."""

    def __init__(self, model: Any, device: Any, autocast_dtype: Any = None, softmax_dtype: Any = None,
                 max_rows: int = 16) -> None:
        self.model, self.device, self.max_rows = model, device, max_rows
        self.autocast_dtype, self.softmax_dtype = autocast_dtype, softmax_dtype
        self.repeatable = True  # False once a forward returned a cache that cannot be repeated: not tried again

    def score(self, requests: list[Request], max_length: int, fallback: list[int],
              done: Callable[[int, Answer], None] | None = None) -> dict[int, Answer]:
        """Answers by request index, each passed to `done` as soon as it is computed; indices lm-eval would truncate
        are appended to `fallback` instead."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, ctx, cont) in enumerate(requests):
            if len(ctx) + len(cont) > max_length + 1 or not ctx or not cont:
                fallback.append(i)
            else:
                groups.setdefault(tuple(ctx), []).append(i)
        answers: dict[int, Answer] = {}
        single = [c for c, idx in groups.items() if all(len(requests[i][2]) == 1 for i in idx)]
        report = done or (lambda i, a: None)
        for k, logprobs in self.shared_last_logprobs(single):
            best = int(logprobs.argmax())  # once per context, not once per choice
            for i in groups[single[k]]:
                (token,) = requests[i][2]
                answers[i] = (float(logprobs[token]), token == best)
                report(i, answers[i])
        longer = sorted(set(groups) - set(single), key=len, reverse=True)
        for ctx, got in self.longer_answers(longer, [[requests[i][2] for i in groups[c]] for c in longer]):
            if got is None:
                fallback += groups[ctx]
                continue
            for i, answer in zip(groups[ctx], got, strict=True):
                answers[i] = answer
                report(i, answer)
        return answers

    def longer_answers(self, contexts: list[tuple[int, ...]], conts: list[list[list[int]]]) \
            -> Iterator[tuple[tuple[int, ...], list[Answer] | None]]:
        """(context, `group_answers` of its continuations); contexts sharing a long prefix start from its cache."""
        prefixed, alone = prefix_groups(contexts)
        for shared, members in [*prefixed, *((0, [k]) for k in alone)]:
            base = self._prefix_cache(contexts[members[0]][:shared]) if shared else None
            for k in members:
                yield contexts[k], self.group_answers(list(contexts[k]), conts[k], base)

    def _forward(self, ids: torch.Tensor, keep: int | torch.Tensor, cache: Any = None, use_cache: bool = False) -> Any:
        with torch.no_grad(), torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype,
                                             enabled=self.autocast_dtype is not None):
            return self.model(ids, past_key_values=cache, use_cache=use_cache, logits_to_keep=keep)

    def _log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)

    def last_logprobs(self, contexts: list[tuple[int, ...]]) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, the log-probabilities after contexts[index]), several contexts per right-padded forward."""
        order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
        for batch in _batches(order, [len(c) for c in contexts], self.max_rows):
            width = len(contexts[batch[0]])
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                ids[r, : len(contexts[i])] = torch.tensor(contexts[i])
            ends = [len(contexts[i]) - 1 for i in batch]
            keep = sorted(set(ends))
            logits = self._forward(ids.to(self.device), torch.tensor(keep, device=self.device)).logits
            for r, i in enumerate(batch):
                yield i, self._log_softmax(logits[r, keep.index(ends[r])])

    def shared_last_logprobs(self, contexts: list[tuple[int, ...]]) -> Iterator[tuple[int, torch.Tensor]]:
        """As `last_logprobs`; contexts sharing a long prefix run it once (KV cache), then their remainders."""
        groups, alone = prefix_groups(contexts)
        for shared, members in groups:
            cache = self._prefix_cache(contexts[members[0]][:shared])
            if cache is None:  # the model's own cache cannot be repeated across rows
                alone += members
                continue
            yield from self._on_prefix(cache, [contexts[i][shared:] for i in members], members)
        for k, logprobs in self.last_logprobs([contexts[i] for i in alone]):
            yield alone[k], logprobs

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        if not self.repeatable:
            return None
        cache = _repeatable(self._forward(torch.tensor([prefix], device=self.device), 1, use_cache=True))
        self.repeatable = cache is not None
        return cache

    def _on_prefix(self, cache: Any, rests: list[tuple[int, ...]], members: list[int]) \
            -> Iterator[tuple[int, torch.Tensor]]:
        """(members[k], log-probabilities after the prefix + rests[k]): rests right-padded on copies of the cache."""
        order = sorted(range(len(rests)), key=lambda k: -len(rests[k]))
        shared = cache.get_seq_length()
        rows = max(1, min(self.max_rows, CACHED_TOKENS // (shared + len(rests[order[0]]))))
        for batch in _batches(order, [len(r) for r in rests], rows):
            ids = torch.zeros((len(batch), len(rests[batch[0]])), dtype=torch.long)
            for r, k in enumerate(batch):
                ids[r, : len(rests[k])] = torch.tensor(rests[k])
            ends = [len(rests[k]) - 1 for k in batch]
            keep = sorted(set(ends))
            rows_cache = copy.deepcopy(cache)
            rows_cache.batch_repeat_interleave(len(batch))
            logits = self._forward(ids.to(self.device), torch.tensor(keep, device=self.device), rows_cache,
                                   use_cache=True).logits
            del rows_cache
            for r, k in enumerate(batch):
                yield members[k], self._log_softmax(logits[r, keep.index(ends[r])])

    def group_answers(self, context: list[int], conts: list[list[int]], base: Any = None) -> list[Answer] | None:
        """One context, its continuations on top of its KV cache (the context runs once; after a copy of `base`,
        the cache of a prefix it shares with others, when given). None when the model's own cache cannot be
        shared across rows (a custom cache class): lm-eval's path then."""
        if not self.repeatable:
            return None
        start = 0 if base is None else base.get_seq_length()
        ctx = torch.tensor([context[start:]], device=self.device)
        out = self._forward(ctx, 1, None if base is None else copy.deepcopy(base), use_cache=True)
        cache = _repeatable(out)
        if cache is None:
            self.repeatable = False
            return None
        first = self._log_softmax(out.logits[0, -1])
        longest = max(len(c) for c in conts)  # > 1: groups of one-token answers go through last_logprobs
        cache.batch_repeat_interleave(len(conts))
        ids = torch.zeros((len(conts), longest - 1), dtype=torch.long)
        for r, c in enumerate(conts):
            ids[r, : len(c) - 1] = torch.tensor(c[:-1])
        ids = ids.to(self.device)
        vocab = first.shape[-1]
        step = max(1, min(TOKENS_PER_FORWARD // len(conts), LOGITS_PER_FORWARD // (len(conts) * vocab)))
        picked = [[first[c[0]].reshape(1)] for c in conts]
        greedy = [[bool(first.argmax() == c[0])] for c in conts]
        for start in range(0, longest - 1, step):
            logits = self._forward(ids[:, start: start + step], 0, cache=cache, use_cache=True).logits
            for r, c in enumerate(conts):
                span = c[start + 1: start + 1 + step]
                if span:
                    lp = self._log_softmax(logits[r, : len(span)])
                    target = torch.tensor(span, device=self.device)
                    picked[r].append(lp.gather(1, target[:, None])[:, 0])
                    greedy[r].append(bool((lp.argmax(-1) == target).all()))
        return [(float(torch.cat(p).sum()), all(g)) for p, g in zip(picked, greedy, strict=True)]


def _repeatable(out: Any) -> Any:
    """The cache a forward returned, if it and each of its layers can be repeated across rows; else None: a model
    that keeps its state elsewhere (Mamba's and FalconMamba's `cache_params`, RecurrentGemma's own state), a
    legacy tuple, a hybrid cache whose linear-attention layers cannot be repeated (Jamba, LFM2), or a layer that
    keeps a recurrent state beside its keys and values (FalconH1, Zamba: transformers'
    LinearAttentionAndFullAttentionLayer, whose batch_repeat_interleave repeats the keys and values alone)."""
    cache = getattr(out, "past_key_values", None)
    if not hasattr(cache, "batch_repeat_interleave"):
        return None
    layers = getattr(cache, "layers", ())
    return cache if all(_repeatable_layer(layer) for layer in layers) else None


def _repeatable_layer(layer: Any) -> bool:
    return hasattr(layer, "batch_repeat_interleave") and not any(
        hasattr(layer, state) for state in ("conv_states", "recurrent_states"))


def prefix_groups(contexts: list[tuple[int, ...]]) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """([(shared prefix length, indices of the contexts that begin with it)], indices of the others). Sorted, the
    contexts that share a prefix are neighbours: runs of neighbours sharing >= MIN_SHARED tokens (each keeping at
    least one token of its own) are groups, a run split where its shortest link is when that saves more tokens; a
    group whose prefix is shorter than what its members add on average is not worth a forward of its own."""
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    links = [min(_common(contexts[i], contexts[j]), len(contexts[i]) - 1, len(contexts[j]) - 1)
             for i, j in zip(order, order[1:], strict=False)]
    groups: list[tuple[int, list[int]]] = []
    alone: list[int] = []
    runs, start = [], 0
    for k in range(len(order)):
        if k == len(links) or links[k] < MIN_SHARED:
            runs.append((start, k + 1))
            start = k + 1
    while runs:
        lo, hi = runs.pop()
        if hi - lo == 1:
            alone.append(order[lo])
            continue
        cut = min(range(lo, hi - 1), key=lambda k: links[k])
        if _saved(links, lo, cut + 1) + _saved(links, cut + 1, hi) > _saved(links, lo, hi):
            runs += [(lo, cut + 1), (cut + 1, hi)]
        elif links[cut] * (hi - lo) >= sum(len(contexts[i]) - links[cut] for i in order[lo:hi]):
            groups.append((links[cut], order[lo:hi]))
        else:  # the prefix is shorter than what each adds on average (a 0-shot description): batched as they are
            alone += order[lo:hi]
    return groups, alone


def _saved(links: list[int], lo: int, hi: int) -> int:
    """Tokens not run again when order[lo:hi] share their common prefix (links[k]: between k and k + 1)."""
    return (hi - lo - 1) * min(links[lo: hi - 1]) if hi - lo > 1 else 0


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The length of the longest common prefix of a and b."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _batches(order: list[int], lengths: list[int], max_rows: int) -> Iterator[list[int]]:
    """Consecutive runs of `order` (longest first) whose padded size fits TOKENS_PER_FORWARD and max_rows."""
    batch: list[int] = []
    for i in order:
        width = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) >= max_rows or (len(batch) + 1) * width > TOKENS_PER_FORWARD):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch

