"""`harness eval --workers N`: models, and pieces of one model's suite split, spread over Ray actors give the rows
one process gives; a worker that dies has its piece evaluated again by a fresh one, a piece that fails fails its run,
and only the driver writes the store."""

from __future__ import annotations

import json
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
    start and two actors' imports, 20-60 s on the shared 2-core machine)."""
    out = []
    for res in results:
        with store.reading():
            samples = store.samples(res.run_id).drop(columns=["run_id"]).sort_values(["task", "doc_id", "metric"])
        scores = sorted((s.task, s.metric, s.value, s.stderr, s.n) for s in store.scores(res.run_id))
        out.append((res.model_id, scores, samples.reset_index(drop=True).to_json()))
    return out


@pytest.mark.slow
def test_two_workers_give_the_rows_of_one(models, results, tmp_path):
    import ray

    from harness.store import Store
    from harness.workflows.evaluate import evaluate
    from harness.workflows.fanout import evaluate_fanout

    refs = [str(m) for m in models]
    serial_store, fan_store = Store(tmp_path / "serial.duckdb"), Store(tmp_path / "fan.duckdb")
    serial = evaluate(refs, "mmlu", OPTS, store=serial_store).results
    try:
        fanned = evaluate_fanout(refs, "mmlu", OPTS, workers=2, store=fan_store).results
        assert not [r for r in fanned if isinstance(r, Exception)], fanned
        assert rows(fan_store, fanned) == rows(serial_store, serial)
        # one model with 2 workers on one task: one piece, one actor; its complete run is reused without any
        assert [r.reused for r in evaluate_fanout(refs[:1], "mmlu", OPTS, 2, store=fan_store).results] == [True]
    finally:
        ray.shutdown()


ZOO_OPTS = EvalOptions(limit=3, use_cache=False,
                       backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
ZOO_FLAGS = ("--limit", "3", "--no-cache", "--device", "cpu", "--dtype", "float32", "--batch-size", "8")


def run_rows(store, run_id: str) -> tuple:
    """A run as the store holds it: its record (all but the started/ended times), every score with its interval,
    every sample row (run id included)."""
    from dataclasses import asdict

    with store.reading():
        run = {k: v for k, v in asdict(store.get_run(run_id)).items() if k not in ("started", "ended")}
        scores = sorted(tuple(asdict(s).values()) for s in store.scores(run_id))
        samples = store.samples(run_id).sort_values(["task", "doc_id", "metric"]).reset_index(drop=True)
    return run, scores, samples.to_json()


def broken_suite(root: Path) -> str:
    """zoo_math's multiple-choice task twice: one reads the public data, the other a data file that is not JSON."""
    folder = root / "zoo_math_broken"
    (folder / "data").mkdir(parents=True)
    src = Path(__file__).resolve().parents[1] / "suites" / "zoo" / "zoo_math"
    (folder / "data" / "public.jsonl").write_text((src / "data" / "public.jsonl").read_text())
    task = (src / "zoo_math_mc_public.yaml").read_text()
    (folder / "data" / "bad.jsonl").write_text("{this is not json\n")
    for name, data in (("zmb_ok", "public"), ("zmb_bad", "bad")):
        text = task.replace("zoo_math_mc_public", name).replace("data/public.jsonl", f"data/{data}.jsonl")
        (folder / f"{name}.yaml").write_text(text)
    (folder / "suite.yaml").write_text("name: zoo_math_broken\nversion: '1'\nkind: lm-eval\ndefault_split: public\n"
                                       "splits:\n  public: [zmb_ok, zmb_bad]\n")
    return "zoo_math_broken"


@pytest.mark.slow
def test_one_model_split_over_two_workers_gives_the_run_of_one(zoo_family, results, tmp_path, monkeypatch):
    """One model, --workers 2, zoo_math's two tasks: two pieces on two actors, joined into the very run one process
    stores (record, scores with intervals and the `_aggregate` row, samples); a worker killed before its piece has
    only that piece evaluated again; a piece that fails fails the run, nothing shown complete. ~1-2 min here."""
    import ray
    import torch

    from harness.errors import HarnessError
    from harness.evaluate.pieces import split_plan
    from harness.evaluate.runner import plan_for
    from harness.store import Store
    from harness.workflows.evaluate import evaluate
    from harness.workflows.fanout import ActorPool, Assembly, evaluate_fanout, pieces_per_run, prepare_runs
    from tests.factories import run_cli

    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))  # before Ray starts: its workers read it
    broken = broken_suite(tmp_path / "suites")
    model = str(zoo_family / "zoo-math")
    plan = plan_for("zoo_math", ZOO_OPTS)
    assert pieces_per_run(1, 2) == [2] and pieces_per_run(3, 2) == [1, 1, 1] and pieces_per_run(2, 5) == [3, 2]
    assert [p.tasks for p in split_plan(plan, 2)] == [(plan.tasks[0],), (plan.tasks[1],)]
    # the actors get cpu_count // 2 torch threads each; the one process gets as many, since torch's matmuls sum in
    # another order with another thread count (log-likelihoods then differ in the 7th digit: not the split's doing)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        serial_store = Store(tmp_path / "serial.duckdb")
        serial = evaluate([model], "zoo_math", ZOO_OPTS, store=serial_store).results[0]
    finally:
        torch.set_num_threads(threads)
    try:
        fan_db = tmp_path / "fan.duckdb"
        code, out, err = run_cli("--db", str(fan_db), "eval", model, "--suite", "zoo_math", *ZOO_FLAGS,
                                 "--workers", "2", "--json")
        assert code == 0, err
        (row,) = json.loads(out)
        assert row["run_id"] == serial.run_id
        fan_store = Store(fan_db)
        assert run_rows(fan_store, serial.run_id) == run_rows(serial_store, serial.run_id)
        cuts = serial_store.cuts(serial.run_id)  # each piece counts its own tasks' requests
        assert fan_store.cuts(serial.run_id) == cuts and {c.task for c in cuts} == set(plan.tasks)
        again = evaluate([model], "zoo_math", ZOO_OPTS, store=fan_store).results[0]  # one process reuses it
        assert (again.reused, again.run_id) == (True, serial.run_id)

        # a worker killed before its piece: that piece goes to a fresh actor; the run lands complete, once
        dead_store = Store(tmp_path / "dead.duckdb")
        dead_store.init()
        _, runs = prepare_runs([model], plan, ZOO_OPTS, dead_store)
        assembly = Assembly(plan, runs, dead_store)
        assembly.cut(2)
        pool = ActorPool("zoo_math", ZOO_OPTS, 2, None)
        try:
            os.kill(pool.pids()[0], signal.SIGKILL)
            (done,) = assembly.run(pool)
        finally:
            pool.close()
        assert done[1].run_id == serial.run_id
        assert run_rows(dead_store, serial.run_id) == run_rows(serial_store, serial.run_id)
        assert [r.status for r in dead_store.list_runs(status=None)] == ["complete"]

        # one piece fails (its task's data file is not JSON), the other is fine: the run is failed with one line
        bad_store = Store(tmp_path / "bad.duckdb")
        (res,) = evaluate_fanout([model], broken, ZOO_OPTS, 2, store=bad_store).results
        assert isinstance(res, HarnessError) and "evaluating zoo-math failed" in res.problem, res
        (run,) = bad_store.list_runs(status=None)
        assert run.status == "failed" and run.error == res.line() and len(res.line().splitlines()) == 1
        with bad_store.reading():
            assert bad_store.scores(run.run_id) == [] and bad_store.samples(run.run_id).empty
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
