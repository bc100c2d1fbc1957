"""`harness eval --workers N`: models spread over Ray actors give the rows one process gives; a worker that dies
has its model evaluated again by a fresh one, and only the driver writes the store."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions

OPTS = EvalOptions(tasks=("mmlu_anatomy",), limit=2, use_cache=False,
                   backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from tests.factories import make_tiny_llama

    root = tmp_path_factory.mktemp("fanout")
    return [make_tiny_llama(root / f"tiny{i}", seed=i) for i in range(2)]


def rows(store, results) -> list[tuple]:
    """Per model: its scores and its samples, without run ids or times (2 models x 2 documents: the test pays Ray's
    start and four actors' imports, ~3-5 min on the shared 2-core machine)."""
    out = []
    for res in results:
        with store.reading():
            samples = store.samples(res.run_id).drop(columns=["run_id"]).sort_values(["task", "doc_id", "metric"])
        scores = sorted((s.task, s.metric, s.value, s.stderr, s.n) for s in store.scores(res.run_id))
        out.append((res.model_id, scores, samples.reset_index(drop=True).to_json()))
    return out


@pytest.mark.slow
def test_two_workers_give_the_rows_of_one_and_survive_a_dead_worker(models, results, tmp_path):
    import ray

    from harness.store import Store
    from harness.workflows.evaluate import evaluate
    from harness.workflows.fanout import ActorPool, evaluate_fanout, record

    refs = [str(m) for m in models]
    serial_store, fan_store = Store(tmp_path / "serial.duckdb"), Store(tmp_path / "fan.duckdb")
    serial = evaluate(refs, "mmlu", OPTS, store=serial_store).results
    try:
        fanned = evaluate_fanout(refs, "mmlu", OPTS, workers=2, store=fan_store).results
        assert not [r for r in fanned if isinstance(r, Exception)], fanned
        assert rows(fan_store, fanned) == rows(serial_store, serial)
        # one model with 2 workers: one actor (no second engine started for nothing); its complete run is reused
        assert [r.reused for r in evaluate_fanout(refs[:1], "mmlu", OPTS, 2, store=fan_store).results] == [True]

        # a worker killed before its run (the second model goes to it): that model goes to a fresh actor, and
        # every run lands complete exactly once
        dead_store = Store(tmp_path / "dead.duckdb")
        dead_store.init()
        pool = ActorPool("mmlu", OPTS, 2, None)
        try:
            os.kill(pool.pids()[0], signal.SIGKILL)
            done = dict(pool.run(dict(enumerate(refs))))
        finally:
            pool.close()
        assert sorted(done) == [0, 1]
        recorded = [record(done[i], dead_store, rerun=False) for i in range(2)]
        assert rows(dead_store, recorded) == rows(serial_store, serial)
        assert [r.status for r in dead_store.list_runs(status=None)] == ["complete"] * 2
    finally:
        ray.shutdown()


def test_workers_refuse_judge_suites_in_one_line(results, tmp_path):
    from tests.factories import run_cli

    code, _, err = run_cli("eval", str(tmp_path), "--suite", "mt_bench", "--judge", str(tmp_path), "--workers", "2")
    assert code == 2
    assert "--workers fans out lm-eval suites" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--tensor-parallel-size", "2"], "--tensor-parallel-size is a vLLM engine setting; the hf backend would ignore"),
    (["--gpu-memory-utilization", "0.8"], "--gpu-memory-utilization is a vLLM engine setting"),
    (["--backend", "vllm", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization 1.5 is not a share"),
    (["--backend", "vllm", "--data-parallel-size", "0"], "--data-parallel-size 0 is below 1"),
])
def test_vllm_engine_settings_are_refused_where_they_would_be_ignored(results, tmp_path, args, message):
    from tests.factories import run_cli

    code, _, err = run_cli("eval", str(tmp_path), "--suite", "mmlu", *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_engine_asks_ray_for_its_tensor_and_data_parallel_gpus(tmp_path):
    from harness.errors import HarnessError
    from harness.evaluate.backends.base import ModelTarget
    from harness.evaluate.backends.vllm import engine_kwargs
    from harness.workflows.fanout import actor_gpus

    bo = BackendOptions(tensor_parallel_size=4, data_parallel_size=2, gpu_memory_utilization=0.75)
    kwargs = engine_kwargs(ModelTarget("m", tmp_path, "m"), bo, cpu=False)
    assert (kwargs["tensor_parallel_size"], kwargs["data_parallel_size"]) == (4, 2)
    assert kwargs["gpu_memory_utilization"] == 0.75 and "enforce_eager" not in kwargs
    assert engine_kwargs(ModelTarget("m", tmp_path, "m"), BackendOptions(), cpu=True)["gpu_memory_utilization"] == 0.5
    assert actor_gpus(16, 2, bo.gpus_per_engine()) == 8
    assert actor_gpus(8, 8, 1) == 1 and actor_gpus(4, 8, 1) == 0 and actor_gpus(0, 2, 8) == 0
    with pytest.raises(HarnessError, match="need 16 GPUs; the cluster has 8") as err:
        actor_gpus(8, 2, 8)
    assert "--workers 1" in err.value.fix
