"""Judge suites: parsing FastChat-format judgments, prompt building, and the end-to-end flow on a real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evaluate.judge.data import load_judge_data
from harness.evaluate.judge.parse import combine_orders, parse_rating, parse_verdict
from harness.evaluate.judge.pipeline import pick_questions
from harness.evaluate.judge.prompts import pairwise_request, single_request
from harness.evaluate.judge.rules import JudgeRules, rules_from

OLDER = rules_from(["last-rating", "ratings-1-to-10", "spaces-in-brackets", "contradictions-unparsed"], 0.0)
SUITES = Path(__file__).resolve().parent.parent / "suites"

GOOD_SINGLE = (
    "The assistant's answer is accurate and well organised. It covers the main causes and gives concrete "
    "examples, although it could say more about the economic effects.\n\nRating: [[8]]"
)


# (judgment, FastChat's reading, harness's older reading = every deviation option on)
@pytest.mark.parametrize("text, fastchat, older", [
    (GOOD_SINGLE, 8.0, 8.0),
    ("Rating: [[7.5]]", 7.5, 7.5),
    ("Rating: [[7.]]", 7.0, None),  # FastChat's pattern takes "7."; the older one wanted digits after a point
    ("The answer is wrong: 3 + 4 is 7, not 8.\nRating: [[ 2 ]]", None, 2.0),  # no spaces in FastChat's brackets
    ("Rating: [3]", 3.0, 3.0),  # the fallback format
    ('As the format says ("for example: Rating: [[5]]"), my rating: [[9]]', 5.0, 9.0),  # first vs last match
    ("I would rate this response a 7 out of 10.", None, None),  # no brackets: unparsed, never 0
    ("Rating: [[11]]", 11.0, None),  # FastChat keeps any value; the older reading kept 1-10 only
    ("Rating: [[0]]", 0.0, None),
    ("[[A]] then [[8]]", 8.0, 8.0),
    ("", None, None),
])
def test_parse_rating(text: str, fastchat: float | None, older: float | None) -> None:
    assert parse_rating(text) == fastchat
    assert parse_rating(text, OLDER) == older


@pytest.mark.parametrize("text, fastchat, older", [
    ("Assistant A follows the instructions more closely and is more accurate. [[A]]", "A", "A"),
    ("Both answers are equally helpful. [[C]]", "tie", "tie"),
    ("After comparing both, my final verdict is: [[B]]", "B", "B"),
    ("Final verdict: [[ A ]]", None, "A"),  # FastChat looks for the exact string "[[A]]"
    ("Assistant A is better.", None, None),
    ("[[B]] at first sight, but on reflection [[A]]", "A", None),  # FastChat checks A, then B, then C
    ("[[C]] or [[B]]", "B", None),
    ("My verdict is [A]", None, None),
])
def test_parse_verdict(text: str, fastchat: str | None, older: str | None) -> None:
    assert parse_verdict(text) == fastchat
    assert parse_verdict(text, OLDER) == older


def test_rules_default_to_fastchat_and_name_every_deviation() -> None:
    rules = JudgeRules()
    assert rules.deviations() == []
    assert [rules.answer_temperature(c) for c in ("writing", "roleplay", "stem", "humanities", "math", "coding",
                                                  "reasoning", "extraction", "generic")] == \
        [0.7, 0.7, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.7]  # a category FastChat does not list: 0.7
    assert JudgeRules(one_temperature=0.0).answer_temperature("writing") == 0.0
    assert set(OLDER.deviations()) == {"last_rating", "ratings_1_to_10", "spaces_in_brackets",
                                       "contradictions_unparsed", "one_temperature=0.0"}
    with pytest.raises(HarnessError, match="unknown judge option 'last-ratings'.*did you mean 'last-rating'"):
        rules_from(["last-ratings"])


def test_turns_of_a_question_are_one_cluster_in_the_interval() -> None:
    import numpy as np

    from harness.stats import summarize, summarize_clustered

    rng = np.random.default_rng(0)
    per_question = rng.normal(5, 2, 40)
    values = np.repeat(per_question, 2) + rng.normal(0, 0.1, 80)  # two turns, nearly the same rating
    questions = np.repeat(np.arange(40), 2)
    naive, clustered = summarize(values), summarize_clustered(values, questions)
    assert clustered.mean == pytest.approx(naive.mean)
    assert clustered.stderr > 1.3 * naive.stderr  # 80 ratings carry about 40 questions' information
    assert clustered.ci_high - clustered.ci_low > 1.3 * (naive.ci_high - naive.ci_low)
    one_each = summarize_clustered(per_question, np.arange(40))
    assert one_each.stderr == pytest.approx(summarize(per_question).stderr)


def test_one_question_has_no_interval() -> None:
    """A category judged on one question (vicuna_bench's math at --tier quick, any category at smoke): both turns
    are one cluster, so resampling questions always redraws the same one. Its spread is unknown, as its stderr says
    (NaN), not zero: the bootstrap's [mean, mean] claimed a 95% interval of width 0."""
    import math

    from harness.stats import summarize_clustered

    est = summarize_clustered([7.0, 9.0], [5, 5])
    assert est.mean == 8.0 and est.n == 2 and math.isnan(est.stderr)
    assert math.isnan(est.ci_low) and math.isnan(est.ci_high)
    two = summarize_clustered([7.0, 9.0, 3.0, 4.0], [5, 5, 6, 6])  # two questions: an interval again
    assert two.ci_low < two.mean < two.ci_high


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


def test_a_second_turn_is_answered_after_the_models_own_first_answer() -> None:
    """FastChat's gen_model_answer: each turn's question is appended to the conversation, and the model's reply to
    it, before the next; answering and marking cut prompts build it alike."""
    from harness.evaluate.judge.data import Question, question_turns

    q = Question(7, "writing", ("first?", "second?"))
    assert q.conversation(["one"], 1) == [{"role": "user", "content": "first?"}]
    assert q.conversation(["one", "two"], 2) == [
        {"role": "user", "content": "first?"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second?"},
    ]
    assert question_turns([q, Question(8, "math", ("only",))]) == [(q, 1), (q, 2), (Question(8, "math", ("only",)), 1)]


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


def test_a_judge_whose_chat_template_has_no_system_role_still_reads_the_instructions(tiny_llama) -> None:
    """FastChat's pairwise and second-turn prompts carry the judge's whole instruction (and the [[A]] / [[rating]]
    format) in the system message. A chat template without a system role (Gemma's, Mistral-Instruct v0.1/v0.2's)
    makes lm-eval drop the system message and keep only the user turn: the judge would grade uninstructed."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from harness.evaluate.judge.chat import ChatGenerator

    path = tiny_llama("no-system-role")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = (  # Gemma's rule: a system message is an error
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    tok.save_pretrained(path)

    class Recording(HFLM):  # lm-eval's model, recording the prompts it is asked to continue
        seen: list[str] = []

        def generate_until(self, requests, disable_tqdm: bool = False):
            self.seen.extend(r.args[0] for r in requests)
            return super().generate_until(requests, disable_tqdm)

    lm = Recording(pretrained=str(path), device="cpu", batch_size=2)
    judge = ChatGenerator(lm, {"model": "j", "backend": "hf"}, max_new_tokens=2)
    data = load_judge_data(SUITES / "mt_bench" / "data")
    writing_q = next(q for q in data.questions if q.category == "writing")
    request = pairwise_request(data, writing_q, ["mine"], ["theirs"], 1)
    judge.generate([request.messages()])
    assert request.system.startswith("Please act as an impartial judge") and "[[A]]" in request.system
    (prompt,) = lm.seen
    assert request.system in prompt and request.user in prompt
    assert prompt.index(request.system) < prompt.index(request.user)
    assert judge.settings(system=True) != judge.settings()  # judgments cached before, uninstructed, are not reused


def test_judge_prompts_lm_eval_cuts_are_marked_and_counted(tiny_llama, store, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """lm-eval cuts a prompt longer than the judge's context less its new tokens from the start (FastChat's
    instructions are there), with only a log line. Each judgment says whether its prompt was cut, and the run
    stores the rate: counted against lm-eval's own warnings, one per prompt at batch size 1."""
    import logging

    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.judge.pipeline import run_judge_suite

    answerer = ChatGenerator(HFLM(pretrained=str(tiny_llama("answerer")), device="cpu", batch_size=8),
                             {"model": "m1", "backend": "hf"}, max_new_tokens=8)
    short = tiny_llama("short-context", words=["Rating:", *[f"[[{i}]]" for i in range(1, 11)]], max_positions=256)
    judge = ChatGenerator(HFLM(pretrained=str(short), device="cpu", batch_size=1),
                          {"model": "j", "backend": "hf"}, max_new_tokens=8)
    with caplog.at_level(logging.WARNING):
        res = run_judge_suite(store, "mt_bench", "1", SUITES / "mt_bench" / "data", "m1", answerer, judge, limit=4,
                              cache_path=tmp_path / "judge.sqlite")
    lm_eval_cuts = sum("Left truncation applied" in r.getMessage() for r in caplog.records)
    rows = store.samples(res.run_id)
    marked = sum(json.loads(e)["judge_prompt_cut"] for e in rows["extra"])
    assert 0 < marked == lm_eval_cuts < len(rows)  # the second turns' longer prompts, not the first turns'
    assert not any(json.loads(e)["answer_prompt_cut"] for e in rows["extra"])
    rate = {(s.task, s.metric): s.value for s in res.scores}[("overall", "prompt_cut_rate")]
    assert rate == pytest.approx(marked / len(rows))


def test_ratings_by_two_judges_are_two_columns(results: Path, store, tmp_path: Path) -> None:
    """A rating by one judge is no rating by another: two judges' runs of one model were stored under the split
    `test`, one column, and the later judge's rating silently replaced the first's. Each judge's runs have a
    column of their own, `test-by-JUDGE`, holding that judge's mean rating (pandas, from the per-sample rows);
    re-running a judge replaces its own column only."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.judge.evaluate import JudgeOptions, evaluate_judge
    from harness.store import frames as views
    from harness.suites import score_rules
    from tests.factories import make_tiny_llama

    model = make_tiny_llama(tmp_path / "answerer")
    lenient, strict = (make_tiny_llama(tmp_path / name, words=["Rating:", *words])  # judgments that parse
                       for name, words in (("lenient", ["[[8]]", "[[9]]"]), ("strict", ["[[2]]", "[[3]]"])))
    bo = BackendOptions(device="cpu", dtype="float32", batch_size=8)

    def judged(judge: Path, limit: int) -> tuple[str, float]:
        opts = JudgeOptions(judge=str(judge), limit=limit, max_new_tokens=6, judge_max_new_tokens=6,
                            backend_options=bo)
        res = evaluate_judge(str(model), "mt_bench", opts, store)
        return res.run_id, store.samples(res.run_id)["score"].astype(float).mean()  # NULL (unparsed) skipped

    def board() -> dict[str, tuple[str, float]]:
        df = views.suite_scores(store, rules=score_rules())
        return {r.split: (r.run_id, r.value) for r in df[df["suite"] == "mt_bench"].itertuples()}

    by_lenient, by_strict = judged(lenient, 4), judged(strict, 4)
    assert by_lenient[1] != pytest.approx(by_strict[1])  # the two judges rate differently
    runs = board()
    assert len(runs) == 2, runs  # one column per judge
    column = {run_id: (split, value) for split, (run_id, value) in runs.items()}
    for run_id, mean in (by_lenient, by_strict):
        split, value = column[run_id]
        assert split.startswith("test-by-") and value == pytest.approx(mean)
        assert store.get_run(run_id).settings["judge"]["name"] in split
    again = judged(lenient, 5)  # the same judge over more questions: its own column changes, the other stays
    after = board()
    assert after[column[by_lenient[0]][0]] == (again[0], pytest.approx(again[1]))
    assert after[column[by_strict[0]][0]] == runs[column[by_strict[0]][0]]
    assert len(after) == 2
    text = CliRunner().invoke(app, ["leaderboard", "--suite", "mt_bench", "--metric", "rating"]).stdout
    assert all(f"{value:.3f} [" in text for _, value in after.values())  # a column per judge there too


def test_check_refuses_a_judge_suite_in_one_line(results: Path, tmp_path: Path) -> None:
    """`harness check` gates lm-eval runs only: it never pairs a candidate's rating with a baseline's, so never one
    judge's rating with another judge's (a judge suite has no judge option there)."""
    from tests.factories import run_cli

    code, _, err = run_cli("check", "--candidate", str(tmp_path), "--baseline", str(tmp_path), "--suite", "mt_bench")
    assert code == 2 and "is a judge suite, not an lm-eval one" in err and "Traceback" not in err


@pytest.mark.parametrize("suite", ["mt_bench", "zoo_math"])  # judged, and the lm-eval path it must match
def test_a_model_that_fails_is_reported_and_the_rest_are_evaluated(zoo_family: Path, results: Path,
                                                                   tmp_path: Path, suite: str) -> None:
    """`harness eval GOOD MISSING GOOD --suite mt_bench --judge J` stopped at the missing folder: the third model
    was never evaluated (an lm-eval suite reports the failure and goes on). Both report the failure, evaluate the
    rest, and exit 2 at the end, through the real CLI in a subprocess."""
    import subprocess
    import sys

    from harness.store import Store

    good, missing, other = zoo_family / "zoo-base", tmp_path / "no-such-model", zoo_family / "zoo-math"
    args = [str(good), str(missing), str(other), "--suite", suite, "--limit", "1", "--device", "cpu", "--dtype",
            "float32"]
    if suite == "mt_bench":
        args += ["--judge", str(good), "--max-new-tokens", "4", "--judge-max-new-tokens", "4"]
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args, "--json"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2, proc.stderr  # a missing folder is bad input: 2, as one model alone exits
    assert f"error: {missing}: no model folder at {missing}: check the path" in proc.stderr
    assert "Traceback" not in proc.stderr
    listed = json.loads(proc.stdout)
    assert [m["model"] for m in listed] == [str(good), str(missing), str(other)]
    assert listed[1]["status"] == "failed" and "no model folder" in listed[1]["error"]
    store = Store(results / "harness.duckdb")
    runs = {store.get_model(r.model_id).path: r for r in store.list_runs(suite=suite, status=None)}
    assert set(runs) == {str(good.resolve()), str(other.resolve())}  # nothing stored for the missing folder
    assert all(r.status == "complete" for r in runs.values())
    assert runs[str(other.resolve())].run_id in {m.get("run_id") for m in listed}
    if suite == "mt_bench":  # one question of two turns: two judgments each
        assert [m["judgments"] for m in (listed[0], listed[2])] == [2, 2]
        assert len(store.samples(runs[str(other.resolve())].run_id)) == 2
