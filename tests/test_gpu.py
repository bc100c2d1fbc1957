"""GPU checks (run on a lent GPU with scripts/gpu_checks.sh; skipped without CUDA)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def _recipe(method: str, a, b) -> dict:
    models = [{"model": str(a), "parameters": {"weight": 0.6}}, {"model": str(b), "parameters": {"weight": 0.4}}]
    if method == "ties":
        for m in models:
            m["parameters"]["density"] = 0.5
        return {"merge_method": "ties", "base_model": str(a), "models": models, "dtype": "float32"}
    return {"merge_method": method, "models": models, "dtype": "float32"}


@pytest.mark.parametrize("method", ["linear", "ties"])
def test_cuda_merge_equals_cpu_merge(tiny_llama, store, method: str) -> None:
    import torch

    from harness.merge import InMemoryMerger

    a, b = tiny_llama("a", seed=1), tiny_llama("b", seed=2)
    cpu = InMemoryMerger(store=store, device="cpu").merge(_recipe(method, a, b))
    gpu = InMemoryMerger(store=store, device="cuda").merge(_recipe(method, a, b))
    assert cpu.keys() == gpu.keys()
    for k in cpu:
        torch.testing.assert_close(cpu[k].float(), gpu[k].float().cpu(), atol=1e-5, rtol=1e-5)


def test_hf_on_cuda_agrees_with_cpu(tiny_llama, results, tmp_path, monkeypatch) -> None:
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from harness.store import Store
    from tests.test_check import write_tiny_suite

    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    write_tiny_suite(tmp_path / "suites")
    model = tiny_llama("m")
    store = Store()
    acc, lls = {}, {}
    for device in ("cpu", "cuda"):  # device is not part of the run id: read each run's rows right away
        bo = BackendOptions(device=device, dtype="float32")
        run = evaluate_model(str(model), "tiny_mc", EvalOptions(use_cache=False, backend_options=bo), store, rerun=True)
        acc[device] = run.score("tiny_mc", "acc").value
        lls[device] = store.samples(run.run_id)["extra"].tolist()
    assert acc["cpu"] == acc["cuda"]
    import json

    for c, g in zip(lls["cpu"], lls["cuda"], strict=True):
        for x, y in zip(json.loads(c)["loglikelihoods"], json.loads(g)["loglikelihoods"], strict=True):
            assert abs(x - y) < 1e-3


@pytest.fixture()
def vllm_installed() -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (the lent GPU machines cannot carry its wheel)")


@pytest.mark.slow
@pytest.mark.vllm
def test_real_model_vllm_on_cuda_agrees_with_hf(vllm_installed, real_model, results, store) -> None:
    """SmolLM2-135M-Instruct on CUDA: vLLM's per-choice loglikelihoods equal hf's within 1e-3 on a few MMLU items,
    with the same accuracy and BOS left off (its tokenizer adds none)."""
    import json

    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    opts = EvalOptions(use_cache=False, backend_options=BackendOptions(device="cuda", dtype="float32", batch_size=8))
    tasks = ("mmlu_marketing", "mmlu_high_school_geography", "mmlu_world_religions")
    hf = evaluate_model(str(real_model.folder), "mmlu", opts, store, limit=10, tasks=tasks)
    vl = evaluate_model(str(real_model.folder), "mmlu", opts, store, limit=10, tasks=tasks, backend="vllm")

    def lls(run_id: str) -> list[float]:
        return [ll for e in store.samples(run_id)["extra"] for ll in json.loads(e)["loglikelihoods"]]

    a, b = lls(hf.run_id), lls(vl.run_id)
    assert len(a) == len(b) == 4 * 10 * len(tasks)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3
    assert {s.task: s.value for s in hf.scores} == {s.task: s.value for s in vl.scores}
    assert store.get_run(vl.run_id).settings["add_bos_token"] is False
