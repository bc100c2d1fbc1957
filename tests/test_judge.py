"""Judge suites: parsing FastChat-format judgments, prompt building, and the end-to-end flow on a real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.evaluate.judge.data import load_judge_data
from harness.evaluate.judge.parse import combine_orders, parse_rating, parse_verdict
from harness.evaluate.judge.pipeline import pick_questions
from harness.evaluate.judge.prompts import pairwise_request, single_request

SUITES = Path(__file__).resolve().parent.parent / "suites"

GOOD_SINGLE = (
    "The assistant's answer is accurate and well organised. It covers the main causes and gives concrete "
    "examples, although it could say more about the economic effects.\n\nRating: [[8]]"
)


@pytest.mark.parametrize("text, expected", [
    (GOOD_SINGLE, 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("The answer is wrong: 3 + 4 is 7, not 8.\nRating: [[ 2 ]]", 2.0),
    ("Rating: [3]", 3.0),  # FastChat's fallback format
    ('As the format says ("for example: Rating: [[5]]"), my rating: [[9]]', 9.0),  # the last rating counts
    ("I would rate this response a 7 out of 10.", None),  # no brackets: unparsed, never 0
    ("Rating: [[11]]", None),  # outside 1-10
    ("Rating: [[0]]", None),
    ("", None),
])
def test_parse_rating(text: str, expected: float | None) -> None:
    assert parse_rating(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Assistant A follows the instructions more closely and is more accurate. [[A]]", "A"),
    ("Both answers are equally helpful. [[C]]", "tie"),
    ("After comparing both, my final verdict is: [[B]]", "B"),
    ("Final verdict: [[ A ]]", "A"),
    ("Assistant A is better.", None),
    ("[[A]] at first sight, but on reflection [[B]]", None),  # contradictory
    ("My verdict is [A]", None),
])
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert parse_verdict(text) == expected


def test_both_orders() -> None:
    assert combine_orders("A", "B") == "win"  # model first and judged better; model second and judged better
    assert combine_orders("B", "A") == "loss"
    assert combine_orders("A", "A") == "tie"  # position bias: disagreement counts as a tie
    assert combine_orders("tie", "tie") == "tie"
    assert combine_orders("A", None) is None


def test_prompts_follow_fastchat() -> None:
    data = load_judge_data(SUITES / "mt_bench" / "data")
    assert len(data.questions) == 80 and all(len(q.turns) == 2 for q in data.questions)
    math_q = next(q for q in data.questions if q.category == "math")
    writing_q = next(q for q in data.questions if q.category == "writing")
    r1 = single_request(data, math_q, ["ans1", "ans2"], 1)
    assert r1.prompt_name == "single-math-v1" and math_q.references[0] in r1.user and "ans1" in r1.user
    r2 = single_request(data, writing_q, ["ans1", "ans2"], 2)
    assert r2.prompt_name == "single-v1-multi-turn" and writing_q.turns[1] in r2.user and "ans2" in r2.user
    p = pairwise_request(data, writing_q, ["mine"], ["theirs"], 1)
    assert p.prompt_name == "pair-v2" and p.user.index("mine") < p.user.index("theirs")
    assert p.messages()[0]["role"] == "system"


def test_pick_questions_spreads_over_categories() -> None:
    data = load_judge_data(SUITES / "vicuna_bench" / "data")
    assert len({q.category for q in pick_questions(data.questions, 9)}) == 9


def test_judge_flow_end_to_end_on_hf(tiny_llama, store, tmp_path: Path) -> None:
    """A real model answers two turns and judges, single and pairwise; rows, parse rate and caching are real."""
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.judge.pipeline import run_judge_suite
    from harness.store import ModelRecord

    path = tiny_llama("answerer")
    store.add_model(ModelRecord("m1", "m1", str(path), "source"))
    lm = HFLM(pretrained=str(path), device="cpu", batch_size=8)
    answerer = ChatGenerator(lm, {"model": "m1", "backend": "hf"}, max_new_tokens=8)
    judge = ChatGenerator(lm, {"model": "m1", "backend": "hf", "role": "judge"}, max_new_tokens=8)
    cache = tmp_path / "judge.sqlite"
    data_dir = SUITES / "mt_bench" / "data"
    single = run_judge_suite(store, "mt_bench", "1", data_dir, "m1", answerer, judge, limit=3, cache_path=cache)
    rows = store.samples(single.run_id)
    assert len(rows) == 6 and set(rows["metric"]) == {"rating_turn1", "rating_turn2"}
    assert store.get_run(single.run_id).status == "complete"
    rate = {(s.task, s.metric): s.value for s in single.scores}[("overall", "parse_rate")]
    assert rate == pytest.approx(rows["score"].notna().mean())  # unparsed rows are NULL, never 0

    pair = run_judge_suite(store, "mt_bench", "1", data_dir, "m1", answerer, judge, baseline=("m1-again", answerer),
                           limit=3, cache_path=cache)
    assert pair.cache_hits >= 6  # the answers were reused; only the judgments were new
    assert set(store.samples(pair.run_id)["metric"]) == {"pairwise_turn1", "pairwise_turn2"}


@pytest.mark.vllm
@pytest.mark.slow
def test_both_suites_with_a_vllm_served_judge(tiny_llama, store, results: Path) -> None:
    """Answers from hf, judgments from a model served by `vllm serve` (OpenAI chat API), on both suites."""
    import os

    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.judge.evaluate import JudgeOptions, evaluate_judge
    from harness.evaluate.serve import serving

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    model = tiny_llama("judge")
    with serving(model, dtype="float32", max_model_len=512) as server:
        for suite in ("vicuna_bench", "mt_bench"):
            opts = JudgeOptions(judge=str(model), judge_backend="openai", judge_base_url=server.base_url, limit=2,
                                max_new_tokens=8, judge_max_new_tokens=8,
                                backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=4))
            res = evaluate_judge(str(model), suite, opts, store)
            run = store.get_run(res.run_id)
            assert run.status == "complete" and run.settings["judge"]["backend"] == "openai"
            turns = 2 if suite == "mt_bench" else 1
            rows = store.samples(res.run_id)
            assert len(rows) == 2 * turns and all(json.loads(e)["judgment"] for e in rows["extra"])
