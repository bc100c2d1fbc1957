"""A judge-suite run: answers (one or two turns), judgments (single rating or pairwise in both orders), scores
with bootstrap intervals per category and overall, per-sample rows in the store. Answers and judgments are cached.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.evaluate.judge.chat import ChatGenerator
from harness.evaluate.judge.data import JudgeData, Question, load_judge_data, question_turns
from harness.evaluate.judge.parse import OUTCOME_SCORE, combine_orders, parse_rating, parse_verdict
from harness.evaluate.judge.prompts import JudgeRequest, pairwise_request, single_request
from harness.evaluate.judge.rules import JudgeRules
from harness.evaluate.judge.text_cache import TextCache
from harness.hashing import hash_json, sha256_file
from harness.store import RunRecord, Sample, Score, Store
from harness.suites import JUDGE_SUMMARY_TASK, JUDGED_BY

Progress = Callable[[str], None]


@dataclass
class JudgeResult:
    run_id: str
    scores: list[Score]
    parse_rate: float
    n_judgments: int
    cache_hits: int
    seconds: dict[str, float] = field(default_factory=dict)


def pick_questions(questions: tuple[Question, ...], limit: int | None) -> list[Question]:
    """The first `limit` questions taken round-robin over categories, so a few questions still cover them."""
    if limit is None or limit >= len(questions):
        return list(questions)
    by_cat: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        by_cat[q.category].append(q)
    order = sorted(questions, key=lambda q: (by_cat[q.category].index(q), list(by_cat).index(q.category)))
    return order[:limit]


def data_hash(data_dir: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(data_dir.rglob("*.jsonl")):
        h.update(p.relative_to(data_dir).as_posix().encode())
        sha256_file(p, h)
    return h.hexdigest()


def _answer_all(gen: ChatGenerator, questions: list[Question], cache: TextCache,
                rules: JudgeRules) -> dict[int, list[str]]:
    """Each question's answers, turn by turn (turn 2 sees the model's own turn-1 answer), at the question
    category's temperature (FastChat's) unless the rules fix one."""
    temp = {q.question_id: rules.answer_temperature(q.category) for q in questions}
    keys = {q.question_id: cache.key({"answer": gen.identity, "settings": {**gen.settings(),
                                                                         "temperature": temp[q.question_id]},
                                      "turns": q.turns})
            for q in questions}
    answers: dict[int, list[str]] = {qid: v for qid, v in cache.get_many(list(keys.values())).items()}
    answers = {qid: answers[k] for qid, k in keys.items() if k in answers}
    todo = [q for q in questions if q.question_id not in answers]
    partial: dict[int, list[str]] = {q.question_id: [] for q in todo}
    for turn in range(1, max((len(q.turns) for q in todo), default=0) + 1):
        batch = [q for q in todo if len(q.turns) >= turn]
        outs = gen.generate([q.conversation(partial[q.question_id], turn) for q in batch],
                            [temp[q.question_id] for q in batch])
        for q, out in zip(batch, outs, strict=True):
            partial[q.question_id].append(out)
    cache.put_many({keys[qid]: a for qid, a in partial.items()})
    answers.update(partial)
    return answers


def _judge_all(judge: ChatGenerator, requests: list[JudgeRequest], cache: TextCache) -> list[str]:
    keys = [cache.key({"judgment": judge.identity, "settings": judge.settings(system=True), "messages": r.messages()})
            for r in requests]
    found = cache.get_many(keys)
    todo = sorted({k for k in keys if k not in found})
    by_key = {k: requests[keys.index(k)] for k in todo}
    outs = judge.generate([by_key[k].messages() for k in todo])
    fresh = dict(zip(todo, outs, strict=True))
    cache.put_many(fresh)
    found.update(fresh)
    return [found[k] for k in keys]


def _scores(samples: list[Sample], metric: str) -> list[Score]:
    """Per category and overall: the mean with an interval clustered by question (a question's turns are not
    independent), and the parse rate."""
    groups: dict[str, list[tuple[float, int]]] = defaultdict(list)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        for task in (JUDGE_SUMMARY_TASK, s.task):
            counts[task][1] += 1
            if s.score is not None:
                groups[task].append((s.score, s.doc_id))
                counts[task][0] += 1
    from harness.stats import summarize_clustered

    out = []
    for task in sorted(counts):
        if groups[task]:
            values, questions = zip(*groups[task], strict=True)
            est = summarize_clustered(values, questions)
            out.append(Score(task, metric, est.mean, est.stderr, est.n, est.ci_low, est.ci_high))
        else:
            out.append(Score(task, metric, None, None, 0))
        parsed, total = counts[task]
        out.append(Score(task, "parse_rate", parsed / total, None, total))
    return out


def _single(data: JudgeData, qs: list[Question], answers: dict[int, list[str]], judge: ChatGenerator,
            cache: TextCache, rules: JudgeRules) -> list[Sample]:
    pairs = question_turns(qs)
    reqs = [single_request(data, q, answers[q.question_id], t) for q, t in pairs]
    texts = _judge_all(judge, reqs, cache)
    cut = judge.cut([r.messages() for r in reqs])
    return [
        Sample(q.category, q.question_id, f"rating_turn{t}", parse_rating(text, rules),
               prediction=answers[q.question_id][t - 1],
               target=q.references[t - 1] if q.needs_reference else None, prompt=q.turns[t - 1],
               extra={"judgment": text, "judge_prompt": r.prompt_name, "parsed": parse_rating(text, rules) is not None,
                      "judge_prompt_cut": c})
        for (q, t), r, text, c in zip(pairs, reqs, texts, cut, strict=True)
    ]


def _pairwise(data: JudgeData, qs: list[Question], answers: dict[int, list[str]], base: dict[int, list[str]],
              judge: ChatGenerator, cache: TextCache, rules: JudgeRules) -> list[Sample]:
    pairs = question_turns(qs)
    first = [pairwise_request(data, q, answers[q.question_id], base[q.question_id], t) for q, t in pairs]
    second = [pairwise_request(data, q, base[q.question_id], answers[q.question_id], t) for q, t in pairs]
    texts = _judge_all(judge, first + second, cache)
    cut = judge.cut([r.messages() for r in first + second])
    out = []
    for i, (q, t) in enumerate(pairs):
        v1, v2 = parse_verdict(texts[i], rules), parse_verdict(texts[len(pairs) + i], rules)
        outcome = combine_orders(v1, v2)
        out.append(Sample(
            q.category, q.question_id, f"pairwise_turn{t}", OUTCOME_SCORE.get(outcome or "", None),
            prediction=answers[q.question_id][t - 1], target=base[q.question_id][t - 1], prompt=q.turns[t - 1],
            extra={"judgment_model_first": texts[i], "judgment_model_second": texts[len(pairs) + i],
                   "verdict_model_first": v1, "verdict_model_second": v2, "outcome": outcome,
                   "judge_prompt_cut": cut[i] or cut[len(pairs) + i]},
        ))
    return out


def _mark_answers_cut(samples: list[Sample], qs: list[Question], answers: dict[int, list[str]],
                      answerer: ChatGenerator, base: dict[int, list[str]] | None,
                      baseline: ChatGenerator | None) -> None:
    """`answer_prompt_cut` on each sample whose answer (or the baseline's) was written from a prompt lm-eval cut
    from its start (a second turn whose first question and answer no longer fit the model's context)."""
    pairs = question_turns(qs)
    cut = answerer.cut([q.conversation(answers[q.question_id], t) for q, t in pairs])
    if base is not None and baseline is not None:
        cut = [a or b for a, b in zip(cut, baseline.cut([q.conversation(base[q.question_id], t) for q, t in pairs]),
                                      strict=True)]
    at = {(q.question_id, t): c for (q, t), c in zip(pairs, cut, strict=True)}
    for s in samples:
        s.extra["answer_prompt_cut"] = at[(s.doc_id, int(s.metric.rsplit("turn", 1)[1]))]


def judge_label(identity: dict[str, Any]) -> str:
    """A judge as its runs' split names it: its name and the first 8 characters of its model id (a name can later
    point to another model; an endpoint's judge is named by its served model and its id hashes the base URL too)."""
    model, name = str(identity.get("model") or ""), identity.get("name")
    return f"{name}@{model[:8]}" if name and name != model else model[:12]


def judged_split(split: str, judge: ChatGenerator, baseline: tuple[str, ChatGenerator] | None = None) -> str:
    """The split a judge run is stored under, `SPLIT[-vs-BASELINE]-by-JUDGE`: the leaderboard keeps one run per
    model, suite and split, and shows one column per suite and split. A win rate is no rating, a win rate against
    one baseline is none against another, and a rating (or a verdict) by one judge is none by another."""
    if baseline:
        split = f"{split}-vs-{baseline[1].identity.get('name') or baseline[0]}"
    return f"{split}{JUDGED_BY}{judge_label(judge.identity)}"


def run_judge_suite(
    store: Store, suite_name: str, suite_version: str, data_dir: Path, model_id: str, answerer: ChatGenerator,
    judge: ChatGenerator, baseline: tuple[str, ChatGenerator] | None = None, limit: int | None = None,
    cache_path: Path | None = None, progress: Progress | None = None, backend: str = "hf",
    backend_version: str | None = None, data_hash_value: str | None = None, split: str = "test",
    rules: JudgeRules | None = None,
) -> JudgeResult:
    """Answer, judge, score and store one model on a judge suite; returns the stored scores. The run is stored
    under a split of its own judge (and baseline): `judged_split`."""
    import time

    from harness.paths import cache_dir

    say = progress or (lambda _msg: None)
    rules = rules or JudgeRules()
    data = load_judge_data(data_dir)
    qs = pick_questions(data.questions, limit)
    mode = "pairwise" if baseline else "single"
    split = judged_split(split, judge, baseline)
    settings: dict[str, Any] = {
        "mode": mode, "limit": limit, "answer": answerer.settings(), "judge": judge.identity,
        "judge_settings": judge.settings(system=True), "baseline": baseline[0] if baseline else None,
        "rules": rules.as_dict(),
    }
    dhash = data_hash_value or data_hash(data_dir)
    run_id = hash_json({"model": model_id, "suite": suite_name, "version": suite_version, "data": dhash,
                        "backend": backend, "settings": settings})[:24]
    run_id = store.attempt_id(run_id)  # a complete run with these settings is kept; this is a new attempt
    store.start_run(RunRecord(run_id, model_id, suite_name, backend, __version__, suite_version=suite_version,
                              split=split, data_hash=dhash, backend_version=backend_version, settings=settings, seed=0))
    cache = TextCache(cache_path or cache_dir() / "judge.sqlite")
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        say(f"answering {len(qs)} questions")
        answers = _answer_all(answerer, qs, cache, rules)
        if baseline:
            say(f"answering {len(qs)} questions with the baseline {baseline[0]}")
            base = _answer_all(baseline[1], qs, cache, rules)
        timings["answer_s"] = time.perf_counter() - t0
        say("judging")
        t1 = time.perf_counter()
        if baseline:
            samples = _pairwise(data, qs, answers, base, judge, cache, rules)
        else:
            samples = _single(data, qs, answers, judge, cache, rules)
        timings["judge_s"] = time.perf_counter() - t1
        _mark_answers_cut(samples, qs, answers, answerer, base if baseline else None,
                          baseline[1] if baseline else None)
        scores = _scores(samples, "win_rate" if baseline else "rating")
        cut = [bool(s.extra.get("judge_prompt_cut") or s.extra.get("answer_prompt_cut")) for s in samples]
        scores.append(Score(JUDGE_SUMMARY_TASK, "prompt_cut_rate", sum(cut) / max(len(cut), 1), None, len(cut)))
        store.finish_run(run_id, scores, samples)
    except BaseException as exc:
        store.fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise
    parsed = [s for s in samples if s.score is not None]
    return JudgeResult(run_id, scores, len(parsed) / max(len(samples), 1), len(samples), cache.hits, timings)
