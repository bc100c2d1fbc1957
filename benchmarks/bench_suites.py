"""How long each shipped lm-eval suite takes on a zoo model, per tier, through `harness eval` (hf backend).

    .venv/bin/python benchmarks/bench_suites.py [--model results/zoo/zoo-base] [--tiers smoke,full]
                                                [--suites zoo_math,mmlu,...]

Each (suite, tier) runs in a fresh results folder (cold request cache) in this process, one after the other, and
prints a row as soon as it is done: documents scored (summed over the split's tasks), requests, seconds,
requests per second, status. Suites whose prompts are longer than the zoo's 512-token context (BBH) fail by
design with one line. The zoo's context is 256 tokens; the few-shot suites' prompts are longer (the zoo tokenizer
spells non-zoo words in bytes), so this runs with --max-length 1024 (lm-eval truncates prompts on the left).
Judge suites (mt_bench, vicuna_bench) need a judge model and are left out.
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
os.environ.setdefault("TQDM_DISABLE", "1")


def run_one(model: str, name: str, tier: str, results: Path, max_length: int) -> tuple[float, object]:
    from harness.errors import HarnessError
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from harness.store import Store

    os.environ["HARNESS_RESULTS"] = str(results)
    opts = EvalOptions(tier=tier, backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=32,
                                                                 max_length=max_length))
    t = time.perf_counter()
    try:
        res: object = evaluate_model(model, name, opts, store=Store(results / "harness.duckdb"))
    except HarnessError as exc:
        res = exc
    return time.perf_counter() - t, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "results" / "zoo" / "zoo-base"))
    ap.add_argument("--tiers", default="smoke,full")
    ap.add_argument("--suites", default="")
    ap.add_argument("--max-length", type=int, default=1024,
                    help="context in tokens; the zoo's is 256, which the few-shot suites' prompts overflow")
    args = ap.parse_args()

    import torch

    from harness.errors import HarnessError
    from harness.suites import list_suites, load_suite

    names = [s.strip() for s in args.suites.split(",") if s.strip()] or [
        n for n in list_suites() if load_suite(n).kind == "lm-eval"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_suites_"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f}; model {args.model}")
    print("| suite | tier | docs | requests | seconds | requests/s | status |\n|---|---|---:|---:|---:|---:|---|")
    for i, name in enumerate(names):
        for tier in args.tiers.split(","):
            secs, res = run_one(args.model, name, tier, tmp / f"{i}-{tier}", args.max_length)
            if isinstance(res, HarnessError):
                print(f"| {name} | {tier} | | | {secs:.1f} | | failed: {res.line()[:90]} |", flush=True)
                continue
            first = res.scores[0].metric if res.scores else None
            docs = sum(s.n or 0 for s in res.scores if s.task != "_aggregate" and s.metric == first)
            n_req = res.new_requests + res.cached_requests
            print(f"| {name} | {tier} | {docs} | {n_req} | {secs:.1f} | {n_req / secs:.0f} | complete |", flush=True)


if __name__ == "__main__":
    main()
