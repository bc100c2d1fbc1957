"""Architectures other than Llama: tiny random Qwen2 (tied embeddings), Mistral (a sliding window of 16 tokens under
5-shot contexts of ~290), Gemma2 (soft capping, alternating sliding layers), Phi-3, GPT-2 (tied), GPT-NeoX and
Falcon (tied), built with transformers' own config classes and the tiny Llama's tokenizer (tests/factories.py).

- scoring: hf_scoring against lm-eval's own HFLM request by request (0- and 5-shot mmlu through the batched and
  shared-prefix paths, answers of several tokens on a KV cache, rolling log-likelihoods): 1e-5 absolute or 2e-6
  relative, identical greedy flags (tests/test_hf_scoring.py's tolerance);
- `harness eval` against lm_eval.simple_evaluate: 5-shot mmlu per-sample log-likelihoods and gsm8k_cot's
  generations, sample by sample;
- `harness merge` (the folder and the in-memory paths) against mergekit's run_merge, tensor by tensor (linear and
  ties), and the merged folder loads with nothing missing or re-initialised; checkpoints mergekit cannot merge
  (tied Falcon, GPT-NeoX as transformers now saves them) fail in one line and leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import ARCHITECTURES, MC_WORDS, SLIDING_WINDOW, STATEFUL, make_tiny_causal, make_tokenizer
from tests.test_hf_scoring import assert_same, free_requests, mmlu_requests, shared_groups

SUBJECTS = ("mmlu_5shot_marketing", "mmlu_5shot_anatomy")
MERGEABLE = ("qwen2", "mistral", "gemma2", "phi3", "gpt2")
slow = pytest.mark.slow


@pytest.fixture(autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Three seeds of each architecture (well under a second each)."""
    root = tmp_path_factory.mktemp("archs")
    out = {a: [make_tiny_causal(root / f"{a}-{s}", a, seed=s) for s in range(3)] for a in ARCHITECTURES}
    return out | {a: [make_tiny_causal(root / f"{a}-0", a)] for a in STATEFUL}


def both(folder: Path) -> tuple:
    """lm-eval's HFLM and ours on one folder, with the word-level tokenizer passed in (a qwen2 folder would load it
    as Qwen2Tokenizer: tests/factories.py make_tiny_causal)."""
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.backends.hf_scoring import ContinuationHFLM

    args = {"pretrained": str(folder), "device": "cpu", "dtype": "float32", "batch_size": 4}
    return (HFLM(**args, tokenizer=make_tokenizer(MC_WORDS)),
            ContinuationHFLM(**args, tokenizer=make_tokenizer(MC_WORDS)))


def longer_answers(shots: list) -> list:
    """The 5-shot contexts, each with answers of several tokens."""
    from lm_eval.api.instance import Instance

    contexts = sorted({r.args[0] for r in shots})
    pairs = [(c, a) for c in contexts for a in (" 12 apples", " the cats left", " B. 7")]
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


@pytest.mark.parametrize("arch", ARCHITECTURES + STATEFUL)
def test_scores_equal_lm_evals(arch: str, models) -> None:
    """Stateful models (FalconMamba, LFM2's conv layers) score one-token answers batched and go through lm-eval's
    path where a cache would be repeated (an AttributeError before: no past_key_values, a layer that cannot be
    repeated)."""
    from harness.evaluate.backends.hf_scoring import Scorer

    theirs, ours = both(models[arch][0])
    cache = Scorer(ours.model, ours.device)._prefix_cache(tuple(range(4, 4 + 6 * SLIDING_WINDOW)))
    assert (cache is None) == (arch in STATEFUL)  # the transformers ones take the fast path, sliding windows too
    zero = mmlu_requests(("mmlu_marketing",), 3)
    assert 1 == min(len(ours.tok_encode(r.args[1])) for r in zero) and shared_groups(ours, zero) == []
    assert_same(ours.loglikelihood(zero, disable_tqdm=True), theirs.loglikelihood(zero, disable_tqdm=True), 2e-6)
    shots = mmlu_requests(SUBJECTS, 3, "oll_v1")
    assert len(shared_groups(ours, shots)) == len(SUBJECTS)  # one cached prompt per subject
    assert min(len(ours._encode_pair(*r.args)[0]) for r in shots) > 10 * SLIDING_WINDOW
    got = ours.loglikelihood(shots, disable_tqdm=True)
    assert len({round(a[0], 3) for a in got}) > len(got) // 2  # the letters score differently: a real comparison
    assert_same(got, theirs.loglikelihood(shots, disable_tqdm=True), 2e-6)
    longer = longer_answers(shots)  # a shared prefix, then each context's KV cache
    assert len(shared_groups(ours, longer)) == len(SUBJECTS)
    assert_same(ours.loglikelihood(longer, disable_tqdm=True), theirs.loglikelihood(longer, disable_tqdm=True), 2e-6)
    ll, rolling = free_requests()
    assert_same(ours.loglikelihood(ll, disable_tqdm=True), theirs.loglikelihood(ll, disable_tqdm=True), 2e-6)
    got = ours.loglikelihood_rolling(rolling, disable_tqdm=True)
    assert_same(got, theirs.loglikelihood_rolling(rolling, disable_tqdm=True), 2e-6)


def test_a_hybrid_cache_layer_with_a_recurrent_state_takes_lm_evals_path(tmp_path: Path) -> None:
    """FalconH1's cache layers hold attention keys and values and a Mamba-2 state together (transformers'
    LinearAttentionAndFullAttentionLayer): they have batch_repeat_interleave, which repeats the keys and values
    only, so the cache cannot be repeated across rows: lm-eval's path, the same scores (a RuntimeError before)."""
    import torch

    from harness.evaluate.backends.hf_scoring import Scorer, _repeatable

    theirs, ours = both(make_tiny_causal(tmp_path / "falcon_h1", "falcon_h1"))
    with torch.no_grad():
        out = ours.model(torch.arange(4, 40)[None], use_cache=True)
    assert all(hasattr(layer, "batch_repeat_interleave") for layer in out.past_key_values.layers)
    assert _repeatable(out) is None
    assert Scorer(ours.model, ours.device)._prefix_cache(tuple(range(4, 4 + 6 * SLIDING_WINDOW))) is None
    ll, _ = free_requests()
    assert_same(ours.loglikelihood(ll, disable_tqdm=True), theirs.loglikelihood(ll, disable_tqdm=True), 2e-6)


@pytest.mark.parametrize("arch", ["mistral", "gemma2"])
def test_the_sliding_window_slides_and_its_cache_takes_the_fast_path(arch: str, models) -> None:
    """The window changes the scores (so the comparison above covers it), and the model's own cache (sliding
    layers) can be repeated across rows: the shared prefix is run once, not sent to lm-eval's path."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = models[arch][0]
    windowed = AutoModelForCausalLM.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    config.sliding_window = 4096
    full = AutoModelForCausalLM.from_pretrained(folder, config=config)
    ids = torch.arange(4, 4 + 6 * SLIDING_WINDOW)[None] % len(MC_WORDS)
    with torch.no_grad():
        out = windowed(ids, use_cache=True)
        assert (out.logits[0, -1] - full(ids).logits[0, -1]).abs().max() > 1e-2
    layers = {type(layer).__name__ for layer in out.past_key_values.layers}
    assert "DynamicSlidingWindowLayer" in layers and hasattr(out.past_key_values, "batch_repeat_interleave")
    from harness.evaluate.backends.hf_scoring import Scorer

    assert Scorer(windowed, torch.device("cpu"))._prefix_cache(tuple(range(4, 4 + 3 * SLIDING_WINDOW))) is not None


def eval_against_lm_eval(folder: Path, store) -> None:
    """harness eval (the library API, hf backend) and lm_eval.simple_evaluate on 5-shot mmlu and gsm8k_cot (both
    load the folder's tokenizer: a qwen2 folder's as Qwen2Tokenizer, which splits words otherwise)."""
    import json

    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.plan import make_plan, task_configs
    from harness.evaluate.runner import EvalOptions, evaluate_model

    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
    for suite, split, tasks, limit in [("mmlu", "oll_v1", SUBJECTS, 3), ("gsm8k", "test", ("gsm8k_cot",), 2)]:
        res = evaluate_model(str(folder), suite, opts, store=store, split=split, tasks=tasks, limit=limit)
        direct = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(folder), "dtype": "float32"},
            tasks=task_configs(make_plan(suite, split, limit, None, list(tasks))), device="cpu", batch_size=8,
            limit=limit, task_manager=TaskManager(include_defaults=False), random_seed=1234,
            numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234)
        for task in tasks:
            rows = store.samples(res.run_id, task)
            logged = direct["samples"][task]
            if suite == "mmlu":
                ours = [ll for e in rows["extra"] for ll in json.loads(e)["loglikelihoods"]]
                theirs = [r[0] for s in sorted(logged, key=lambda s: s["doc_id"]) for r in s["filtered_resps"]]
                assert len(ours) == 4 * limit and ours == pytest.approx(theirs, abs=1e-5)
                assert res.score(task, "acc").value == direct["results"][task]["acc,none"]
            else:
                ours = sorted(zip(rows["doc_id"], rows["metric"], rows["prediction"], strict=True))
                theirs = sorted((s["doc_id"], f"exact_match,{s['filter']}", s["filtered_resps"][0]) for s in logged)
                assert len(ours) == 2 * limit and ours == theirs


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[] if a in ("mistral", "falcon_mamba") else slow)
                                  for a in ARCHITECTURES + STATEFUL])
def test_harness_eval_equals_lm_eval(arch: str, models, store) -> None:
    eval_against_lm_eval(models[arch][0], store)


def test_an_answer_the_tokenizer_loses_fails_in_one_line(store, tmp_path) -> None:
    """A qwen2 folder's word-level tokenizer without mmlu's letters, loaded by transformers as Qwen2Tokenizer,
    encodes " A" to nothing: lm-eval's HFLM stops on a bare AssertionError; harness eval names the answer and the
    tokenizer."""
    from harness.errors import HarnessError
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from tests.factories import WORDS

    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
    folder = make_tiny_causal(tmp_path / "q", "qwen2", words=WORDS)
    with pytest.raises(HarnessError) as info:
        evaluate_model(str(folder), "mmlu", opts, store=store, tasks=("mmlu_marketing",), limit=2)
    line = info.value.line()
    assert "encodes to no tokens" in line and "Qwen2Tokenizer" in line and "\n" not in line, line


def merge_recipes(folders: list[Path]) -> dict[str, dict]:
    m0, m1, m2 = (str(f) for f in folders)
    return {
        "linear": {"merge_method": "linear", "models": [
            {"model": m0, "parameters": {"weight": 0.3}}, {"model": m1, "parameters": {"weight": 0.7}}]},
        "ties": {"merge_method": "ties", "base_model": m0, "models": [
            {"model": m1, "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m2, "parameters": {"weight": 0.5, "density": 0.7}}]},
    }


@pytest.mark.parametrize("arch", MERGEABLE)
@pytest.mark.parametrize("method", ["linear", "ties"])
def test_merge_equals_mergekit(arch: str, method: str, models, store, results, tmp_path) -> None:
    import json

    from transformers import AutoModelForCausalLM

    from harness.merge import InMemoryMerger, merge_to_folder
    from tests.test_merge import assert_same as same_tensors
    from tests.test_merge import load_folder, mergekit_run_merge, write_recipe

    recipe = merge_recipes(models[arch])[method]
    path = write_recipe(tmp_path, method, recipe)
    folder = merge_to_folder(path, seed=7, store=store).path
    ours = load_folder(folder)
    same_tensors(ours, mergekit_run_merge(recipe, tmp_path / "peer", seed=7))
    same_tensors(InMemoryMerger(store=store, seed=7).merge(path), ours)  # the search loops' path
    assert sorted(ours) == sorted(load_folder(models[arch][0]))  # no tensor lost or added (a tied head stays tied)
    config = json.loads((models[arch][0] / "config.json").read_text())
    assert json.loads((folder / "config.json").read_text()) == config
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # nothing missing, unexpected or re-initialised
    state = model.state_dict()
    assert all(state[k].equal(v) for k, v in ours.items())
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == config.get("tie_word_embeddings", arch == "gpt2")


@pytest.mark.parametrize(("arch", "missing"), [("falcon", "lm_head.weight"), ("gpt_neox", "attention.bias")])
def test_checkpoints_mergekit_cannot_merge_fail_in_one_line(arch: str, missing: str, models, store, results,
                                                           tmp_path) -> None:
    """mergekit's falcon definition needs lm_head.weight, which a tied Falcon saved by transformers 5 lacks; its
    gpt-neox one needs the attention.bias buffers transformers no longer saves. mergekit-yaml fails on them too."""
    from tests.factories import run_cli
    from tests.test_merge import mergekit_run_merge, write_recipe
    from tests.test_merge_errors import assert_nothing_left

    recipe = merge_recipes(models[arch])["linear"]
    with pytest.raises(RuntimeError, match="required but not present"):
        mergekit_run_merge(recipe, tmp_path / "peer", seed=7)
    code, out, err = run_cli("merge", str(write_recipe(tmp_path, "r", recipe)))
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert missing in line and "required but not present" in line and "merge checkpoints that hold it" in line, line
    assert_nothing_left(results, store)


@pytest.mark.parametrize("arch", ["gpt2", "falcon", "qwen2"])  # gpt_neox: see docs/evolve.md
def test_the_evolve_engine_swaps_weights_in(arch: str, models) -> None:
    """evolve's hf engine on a model of one seed, given another seed's tensors, scores as that seed's own folder
    (GPT-2 and Falcon keep their layers in .h: the engine failed on them with an AttributeError)."""
    from transformers import AutoModelForCausalLM

    from harness.evolve.engines import HFEngine, hf_prompt_logprobs, max_gap, probe_prompts, tensor_layers
    from tests.test_merge import load_folder

    engine = HFEngine(models[arch][0], "float32", 4, None)
    other = load_folder(models[arch][1])
    assert tensor_layers(other) == 2
    engine.swap(other)
    prompts = probe_prompts(len(MC_WORDS))
    want, before = (hf_prompt_logprobs(AutoModelForCausalLM.from_pretrained(models[arch][k]).eval(), prompts)
                    for k in (1, 0))
    assert max_gap(engine.prompt_logprobs(prompts), want) < 1e-5
    assert max_gap(before, want) > 0.1  # the swap changed something
