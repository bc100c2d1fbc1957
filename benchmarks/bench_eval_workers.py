"""`harness eval` of several models with `--workers 2` against the same command with one process, in one run.

    .venv/bin/python benchmarks/bench_eval_workers.py                       # 8 random Llamas built here
    .venv/bin/python benchmarks/bench_eval_workers.py --models A B C ...    # your own folders (e.g. zoo models)
    .venv/bin/python benchmarks/bench_eval_workers.py --hidden 512 --layers 8 --limit 135   # more work per model
    .venv/bin/python benchmarks/bench_eval_workers.py --models M --tasks all --limit 3   # one model cut in 2 pieces
    .venv/bin/python benchmarks/bench_eval_workers.py --models results/zoo/* --suite zoo_math --tasks all --limit 0

Each command runs in a fresh results folder with --no-cache (every answer computed), on mmlu or --suite S (--tasks,
--limit; --limit 0: every document).
Prints wall and CPU seconds of each, the speed-up, whether the scores of every model are identical, and the
machine with its load (two workers need two free cores to approach 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(models: list[Path], work: Path, workers: int, args: argparse.Namespace) -> tuple[float, float, list]:
    res = work / f"res{workers}"
    env = {**os.environ, "HARNESS_RESULTS": str(res), "HARNESS_DB": str(res / "harness.duckdb"),
           "TOKENIZERS_PARALLELISM": "false"}
    tasks = [] if args.tasks == "all" else ["--tasks", args.tasks]
    limit = ["--limit", str(args.limit)] if args.limit else []
    suite, _, split = args.suite.partition(":")
    split_arg = ["--split", split] if split else []
    cmd = [sys.executable, "-m", "harness.cli", "eval", *map(str, models), "--suite", suite, *split_arg, *tasks, *limit,
           "--device", "cpu", "--dtype", "float32", "--no-cache", "--json", "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"harness eval --workers {workers} failed")
    rows = [sorted((s["task"], s["metric"], s["value"]) for s in r["scores"]) for r in json.loads(out)]
    return wall, usage.ru_utime + usage.ru_stime, rows  # CPU of the driver only: Ray's actors are not its children


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=8, help="how many random models to build (without --models)")
    ap.add_argument("--suite", default="mmlu", help="any suite (suite:split for another split)")
    ap.add_argument("--tasks", default="mmlu_anatomy,mmlu_astronomy", help="mmlu tasks, or 'all' (57)")
    ap.add_argument("--limit", type=int, default=20, help="documents per task (0: all)")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the random models (without --models)")
    ap.add_argument("--layers", type=int, default=4, help="layers of the random models (without --models)")
    args = ap.parse_args()
    from tests.factories import make_tiny_llama

    work = Path(tempfile.mkdtemp(prefix="bench_workers_"))
    try:
        models = args.models or [make_tiny_llama(work / f"m{i}", seed=i, hidden=args.hidden, layers=args.layers,
                                                 heads=4, intermediate=2 * args.hidden) for i in range(args.n)]
        one = run(models, work, 1, args)
        two = run(models, work, 2, args)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\nmachine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, load {load}")
        shape = "" if args.models else f" (random Llamas, hidden {args.hidden}, {args.layers} layers)"
        print(f"{len(models)} models{shape}, {args.suite} {args.tasks} --limit {args.limit or 'none'}, --no-cache\n")
        print("measure | --workers 2 | --workers 1 (peer) | ratio")
        print("--- | --- | --- | ---")
        print(f"wall, s | {two[0]:.1f} | {one[0]:.1f} | {one[0] / two[0]:.2f}x faster")
        print(f"CPU s of the driver process (not the actors') | {two[1]:.1f} | {one[1]:.1f} | ")
        print(f"identical scores, every model | {two[2] == one[2]} | | ")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
