"""How fast `harness eval` is, each figure against its peer measured in this same process:

  1. harness overhead: harness eval (hf, cold cache) vs lm-eval's simple_evaluate on the same model, tasks
     and backend (target: within 10%)
  2. cached re-run: a forced re-run answered from the request cache, and the same command again (the complete
     run is found by its id), vs the cold run (target: 20x faster or better)
  3. hf vs vllm on CPU: loglikelihood requests per second on the same requests, engine start-up apart

    .venv/bin/python benchmarks/bench_eval.py [--workload mmlu|tiny] [--docs N] [--repeats 2] [--threads T]
                                              [--no-vllm]

Uses a random-weight Llama (hidden 256, 4 layers, context 512). Workloads: `mmlu` (default), two subjects of the
shipped MMLU suite, 5-shot, so prompts are long and the model's work is a real share of the run; `tiny`, a
generated 2-task multiple-choice suite with short prompts, where fixed costs dominate. On a shared 2-core machine
pass --threads 1: torch's two threads fighting another process make every timing several times slower and noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}), "
            f"python {platform.python_version()}, load average {load:.1f} at start")


def lm_eval_direct(model: Path, configs: list[dict], limit: int, batch: int) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model), "dtype": "float32"}, tasks=configs, device="cpu",
        batch_size=batch, limit=limit, task_manager=TaskManager(include_defaults=False), bootstrap_iters=1000,
        random_seed=1234, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
    )


INNER: list[float] = []  # seconds spent inside lm-eval's simple_evaluate during each harness run


def _timing_simple_evaluate():
    """Wrap lm_eval.simple_evaluate (which harness calls) to split harness's own time from lm-eval's."""
    import lm_eval

    real = lm_eval.simple_evaluate

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            INNER.append(time.perf_counter() - t)

    lm_eval.simple_evaluate = wrapper
    return real


def harness_run(model: Path, suite, limit: int, batch: int, results: Path, **kw):
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from harness.store import Store

    os.environ["HARNESS_RESULTS"] = str(results)
    opts = EvalOptions(limit=limit, backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=batch))
    res = evaluate_model(str(model), suite, opts, store=Store(results / "harness.duckdb"), **kw)
    assert res.status == "complete"
    return res


def throughput(model: Path, backend: str, requests: list) -> tuple[float, float]:
    """(start-up seconds, requests per second) of one backend on the given loglikelihood requests."""
    from harness.evaluate.backends import get_backend
    from harness.evaluate.backends.base import BackendOptions, ModelTarget

    opts = BackendOptions(device="cpu", dtype="float32", batch_size=32, add_bos_token=False, max_length=256)
    start, lm = timed(get_backend(backend).build, ModelTarget("bench", model, "bench"), opts)
    lm.loglikelihood(requests[:8])  # warm-up
    seconds, _ = timed(lm.loglikelihood, requests)
    del lm
    return start, len(requests) / seconds


MMLU_TASKS = ("mmlu_5shot_abstract_algebra", "mmlu_5shot_astronomy")  # split oll_v1: 5-shot, long prompts


def workload(name: str, tmp: Path, docs: int) -> tuple[object, list[dict], str]:
    """(suite, lm-eval task configs, description). tiny: a generated 2-task multiple-choice suite with short
    prompts, where fixed costs dominate; mmlu: two subjects of the shipped MMLU suite, 5-shot, long prompts."""
    from harness.suites import load_suite
    from tests.test_eval_support import make_suite

    if name == "tiny":
        suite = make_suite(tmp / "suite", n=docs)
        return suite, suite.task_configs("public"), f"{docs} docs x 2 generated tasks x 4 choices, short prompts"
    suite = load_suite("mmlu")
    configs = [c for c in suite.task_configs("oll_v1") if c["task"] in MMLU_TASKS]
    return suite, configs, f"{docs} docs x {len(MMLU_TASKS)} MMLU subjects x 4 choices, 5-shot"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("mmlu", "tiny"), default="mmlu")
    ap.add_argument("--docs", type=int, default=0, help="documents per task (default: mmlu 40, tiny 100)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    import logging

    from tests.factories import make_tiny_llama

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    model = make_tiny_llama(tmp / "model", hidden=256, layers=4, heads=4, intermediate=1024)
    n, b = args.docs or (40 if args.workload == "mmlu" else 100), args.batch_size
    suite, configs, what = workload(args.workload, tmp, n)
    tasks = tuple(c["task"] for c in configs)
    info = machine()
    lm_eval_direct(model, configs, 2, b)  # imports and first-touch costs out of the way
    direct, cold, own = [], [], []
    _timing_simple_evaluate()
    for i in range(args.repeats):  # interleaved, each harness run in a fresh results folder (cold cache)
        direct.append(timed(lm_eval_direct, model, configs, n, b)[0])
        t, res = timed(harness_run, model, suite, n, b, tmp / f"results{i}", tasks=tasks)
        cold.append(t)
        own.append(t - INNER[-1])
    results = tmp / f"results{args.repeats - 1}"
    cached = [timed(harness_run, model, suite, n, b, results, rerun=True, tasks=tasks)[0]
              for _ in range(args.repeats)]
    reused = [timed(harness_run, model, suite, n, b, results, tasks=tasks)[0] for _ in range(args.repeats)]
    d, c, ca, re_ = (min(x) for x in (direct, cold, cached, reused))  # least disturbed on a shared machine
    n_req = len(configs) * n * 4
    rows = [
        ("lm-eval simple_evaluate (hf)", d, "1.00", "peer"),
        ("harness eval, cold cache (hf)", c, f"{c / d:.2f} x lm-eval", "<= 1.10"),
        ("  of which harness's own work", min(own), f"{min(own) / d:.1%} of lm-eval's time", "<= 10%"),
        ("harness eval --rerun, all cached", ca, f"{c / ca:.1f}x faster than cold", ">= 20x"),
        ("harness eval again (run reused)", re_, f"{c / re_:.0f}x faster than cold", ">= 20x"),
    ]
    if not args.no_vllm:
        from lm_eval.api.instance import Instance

        from tests.test_eval_support import make_suite

        short = make_suite(tmp / "throughput", n=100).task_configs("public")[0]
        reqs = [Instance("loglikelihood", {}, (c["question"], " " + ch), i)
                for i, c in enumerate(_docs(short, 100)) for ch in c["choices"]]
        hf_start, hf_rps = throughput(model, "hf", reqs)
        vl_start, vl_rps = throughput(model, "vllm", reqs)
        rows += [
            (f"hf: {len(reqs)} loglikelihood requests", len(reqs) / hf_rps, f"{hf_rps:.0f} req/s",
             f"start {hf_start:.1f} s"),
            (f"vllm: {len(reqs)} loglikelihood requests", len(reqs) / vl_rps, f"{vl_rps:.0f} req/s "
             f"({vl_rps / hf_rps:.2f} x hf)", f"start {vl_start:.1f} s"),
        ]
    print(f"\nbench_eval ({args.workload}): {n_req} requests per run ({what}), random Llama hidden 256 x 4 layers, "
          f"batch {b}, best of {args.repeats}")
    print(f"machine: {info}")
    print(f"{'measurement':44} {'seconds':>9}  {'ratio':34} target")
    for name, secs, ratio, target in rows:
        print(f"{name:44} {secs:9.2f}  {ratio:34} {target}")
    print("raw seconds: " + "; ".join(f"{k} {[round(x, 2) for x in v]}" for k, v in [
        ("lm-eval", direct), ("harness cold", cold), ("harness own", own), ("cached", cached), ("reused", reused)]))


def _docs(config: dict, n: int) -> list[dict]:
    import json

    path = config["dataset_kwargs"]["data_files"]["test"]
    return [json.loads(line) for line in Path(path).read_text().splitlines()[:n]]


if __name__ == "__main__":
    main()
