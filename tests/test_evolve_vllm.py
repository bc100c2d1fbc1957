"""The vLLM weight swap: after each swap the live engine computes with the new weights (prompt logprobs and
prefix-cached generation equal a transformers forward pass of those weights), and a vLLM-backed search scores
candidates as `harness eval --backend vllm` scores the materialised merge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
TOL = 1e-3


def _state(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _hf_next_token_logprob(sd: dict, folder: Path, ids: list[int]) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model.load_state_dict(sd, strict=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
    tok = int(logp.argmax())
    return tok, float(logp[tok])


def test_swapped_engine_computes_with_the_new_weights(tmp_path: Path, results: Path) -> None:
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from harness.evolve.engines import Reference, max_gap, probe_prompts
    from harness.evolve.params import Space
    from harness.evolve.vllm_swap import VLLMEngine
    from harness.merge import InMemoryMerger
    from tests.factories import make_tiny_llama
    from tests.test_evolve_support import make_config, make_models

    torch.set_num_threads(1)
    base, sources = make_models(tmp_path, n_sources=2, tie=True)  # tied head: the CPU repack caveat
    other = make_tiny_llama(tmp_path / "other", seed=7, tie=True)
    engine = VLLMEngine(base, "float32", 16, True)
    ref = Reference(base, "float32")
    probes = probe_prompts(100, n=3, length=40)
    a, b = _state(base), _state(other)
    assert max_gap(engine.prompt_logprobs(probes), ref.logprobs(a, probes)) < TOL
    engine.swap(b)
    assert max_gap(engine.prompt_logprobs(probes), ref.logprobs(b, probes)) < TOL
    assert max_gap(engine.prompt_logprobs(probes), ref.logprobs(a, probes)) > 0.1  # it really changed

    # a merged candidate (task arithmetic per layer), straight from the in-memory merger
    from harness.evolve.config import parse_config

    cfg = parse_config(make_config(tmp_path, base, sources, granularity="layer"))
    space = Space.build(cfg, [str(s) for s in sources], str(base), 2)
    merged = InMemoryMerger(seed=0).merge(space.recipe([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]))
    engine.swap(merged)
    assert max_gap(engine.prompt_logprobs(probes), ref.logprobs(merged, probes)) < TOL

    # the prefix cache: generate on a long prompt, swap, generate again on the same prompt
    ids = probe_prompts(100, n=1, length=300, seed=5)[0]
    params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=1)

    def next_token() -> tuple[int, float]:
        out = engine.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)[0].outputs[0]
        tok = out.token_ids[0]
        return tok, float(out.logprobs[0][tok].logprob)

    next_token()
    engine.swap(b)
    tok, lp = next_token()
    want_tok, want_lp = _hf_next_token_logprob(b, base, ids)
    assert tok == want_tok and abs(lp - want_lp) < TOL
    engine.close()


def test_vllm_search_scores_like_the_runner(tmp_path: Path, store) -> None:
    import yaml

    from harness.store import evolve as records
    from harness.workflows.evolve import run_evolve
    from tests.test_evolve_support import make_config, make_models, make_suite

    make_suite(tmp_path / "suites")
    base, sources = make_models(tmp_path / "models", tie=True)
    cfg = make_config(tmp_path, base, sources, backend="vllm", budget={"generations": 1}, check_every=0,
                      verify_every=1)
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    res = run_evolve(tmp_path / "e.yaml", store=store)
    cands = records.candidates(store, res.evolve_id)
    assert len(cands) == 4 and all(c.params["swap_gap"] is not None and c.params["swap_gap"] < TOL for c in cands)
    search = next(r for r in res.runs if r["split"] == "search")
    acc = next(s["value"] for s in search["scores"] if s["task"] == "tiny_sum_mc_search")
    assert acc == pytest.approx(res.best_fitness)
