"""Candidates per minute: the evolve path (in-memory merge + weights swapped into one live engine) against the
on-disk path mergekit-evolve took (merge to a folder, then load a fresh engine on it), same candidates, same
lm-eval tasks, same process.

    .venv/bin/python benchmarks/bench_evolve.py                       # tiny random Llamas, hf and vllm
    .venv/bin/python benchmarks/bench_evolve.py --zoo --backend hf    # the zoo (results/zoo), zoo_math_L search
    .venv/bin/python benchmarks/bench_evolve.py --space dfs --backend hf   # DFS layer paths (hf only)

The on-disk path runs twice: with the lm-eval task objects built once and shared (generous to it: since the
request reuse of harness.evolve.fitness, their requests are built once too), and with the tasks built again for
every candidate, as mergekit-evolve did (its evaluation called lm-eval afresh per candidate). Every path scores
every candidate; the scores must agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOCK = time.process_time  # --clock: CPU seconds of this process (steady on a shared machine) or wall seconds
sys.path.insert(0, str(ROOT))


def machine() -> str:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} cores (load avg {load[0]:.1f}), torch {torch.__version__} "
            f"threads={torch.get_num_threads()}, cuda={torch.cuda.is_available()}, python {platform.python_version()}")


def setup(work: Path, zoo: Path | None) -> tuple[Path, list[Path], Path | None, str, str, int | None]:
    """(base, sources, suites root, suite, split, limit)."""
    if zoo:
        z = zoo
        return z / "zoo-base", [z / "zoo-math", z / "zoo-lang"], None, "zoo_math_L", "search", 60
    from tests.test_evolve_support import make_models, make_suite

    make_suite(work / "suites", sizes={"search": 40, "heldout": 4, "public": 4})
    base, sources = make_models(work / "models", n_sources=2, tie=True)
    return base, sources, work / "suites", "tiny_sum", "search", None


def recipes(base: Path, sources: list[Path], n: int, seed: int = 0, space: str = "ps") -> tuple[list[dict], object]:
    import random

    from harness.evolve.config import parse_config
    from harness.evolve.params import Space, num_layers

    if space == "dfs":
        return dfs_recipes(sources, n, seed)
    cfg = parse_config({"base": str(base), "sources": [str(s) for s in sources], "method": "task_arithmetic",
                        "parameters": {"weight": {"low": 0.0, "high": 1.2}}, "granularity": "layer_groups",
                        "layer_groups": 2, "fitness": [{"suite": "x"}], "budget": {"generations": 1}})
    space = Space.build(cfg, [str(s) for s in sources], str(base), num_layers(base))
    rng = random.Random(seed)
    return [space.recipe([rng.random() for _ in range(space.dim)]) for _ in range(n)], cfg


def dfs_recipes(sources: list[Path], n: int, seed: int) -> tuple[list[dict], object]:
    """Random layer paths (T = layers x sources x 2 repeats, indicators and scales) that select at least a layer."""
    import random

    from harness.evolve.config import parse_config
    from harness.evolve.dfs import DfsSpace

    cfg = parse_config({"sources": [str(s) for s in sources], "method": "dfs", "dfs": {"repeats": 2},
                        "fitness": [{"suite": "x"}], "budget": {"generations": 1}})
    space = DfsSpace.build(cfg, [str(s) for s in sources])
    rng = random.Random(seed)
    out: list[dict] = []
    while len(out) < n:
        r = space.recipe([rng.random() for _ in range(space.dim)])
        if r is not None:
            out.append(r)
    return out, cfg


def fast_path(backend: str, base: Path, recs: list[dict], tasks: object) -> tuple[float, list[float], list[float]]:
    """(engine start seconds, seconds per candidate, fitness per candidate)."""
    from harness.evaluate.backends.base import BackendOptions, ModelTarget
    from harness.evaluate.run_settings import resolve_bos
    from harness.evolve.engines import open_engine
    from harness.merge import InMemoryMerger

    t0 = CLOCK()
    bos = resolve_bos(ModelTarget("b", base, base.name), BackendOptions())
    engine = open_engine(backend, base, "float32", 64, bos)
    merger = InMemoryMerger(seed=0)
    import_once()
    start = CLOCK() - t0
    secs, fits = [], []
    for r in recs:
        t = CLOCK()
        engine.swap(merger.merge(r))
        fits.append(tasks.score(engine.lm).fitness)  # type: ignore[attr-defined]
        secs.append(CLOCK() - t)
    engine.close()
    return start, secs, fits


def import_once() -> None:
    """The modules a merge and a score import on first use (0.4 s for mergekit's config, which imports peft and
    networkx): once per process, so counted in the one-time start, not in the first candidate's seconds."""
    import lm_eval.evaluator  # noqa: F401
    import mergekit.config  # noqa: F401
    import mergekit.merge  # noqa: F401
    import mergekit.plan  # noqa: F401


def disk_path(backend: str, base: Path, recs: list[dict], tasks: object, work: Path,
              rebuild: Any = None) -> tuple[list[float], list]:
    """Per candidate: merge_to_folder, a fresh engine on the folder (and, with `rebuild`, fresh lm-eval tasks from
    it), score, drop it (seconds, fitness)."""
    import gc

    from harness.evaluate.backends.base import BackendOptions, ModelTarget
    from harness.evaluate.run_settings import resolve_bos
    from harness.evolve.engines import backend_lm
    from harness.merge import merge_to_folder
    from harness.store import Store

    store = Store(work / f"disk-{backend}.duckdb")
    bos = resolve_bos(ModelTarget("b", base, base.name), BackendOptions())
    secs, fits = [], []
    for i, r in enumerate(recs):
        t = CLOCK()
        out = work / f"disk-{backend}-{i}"
        res = merge_to_folder(r, out, seed=0, store=store)
        lm = backend_lm(backend, res.path, "float32", 64, bos)
        fits.append((rebuild() if rebuild else tasks).score(lm).fitness)  # type: ignore[attr-defined]
        del lm
        gc.collect()
        secs.append(CLOCK() - t)
        shutil.rmtree(out, ignore_errors=True)
    return secs, fits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    ap.add_argument("--zoo", action="store_true", help="use the zoo models and zoo_math_L (harness zoo build)")
    ap.add_argument("--fast", type=int, default=12, help="candidates on the in-memory path")
    ap.add_argument("--disk", type=int, default=3, help="candidates on the on-disk path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--space", default="ps", choices=["ps", "dfs"], help="merge parameters or DFS layer paths")
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="time per candidate in CPU seconds of this process (default) or wall seconds")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    import torch

    torch.set_num_threads(args.threads)
    from harness.paths import zoo_dir

    zoo = zoo_dir() if args.zoo else None  # before the results folder moves to the scratch folder
    work = Path(tempfile.mkdtemp(prefix="bench-evolve-"))
    os.environ.update(HARNESS_RESULTS=str(work / "results"), HARNESS_DB=str(work / "results" / "h.duckdb"),
                      HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    from harness.evolve.config import FitnessSuite
    from harness.evolve.fitness import SplitTasks

    base, sources, root, suite, split, limit = setup(work, zoo)
    recs, _ = recipes(base, sources, max(args.fast, args.disk), space=args.space)
    if args.space == "dfs":
        base = sources[0]  # a dfs engine starts on the first source; each path changes its depth
        if args.backend != ["hf"]:
            raise SystemExit("--space dfs runs on --backend hf only")
    tasks = SplitTasks.build((FitnessSuite(suite=suite),), split, root, limit)
    print(f"machine: {machine()}")
    print(f"models: {base.parent if args.zoo else 'tiny random Llama (hidden 128, 2 layers, tied head)'}; "
          f"suite {suite}:{split} limit={limit}; space {args.space}; per candidate: "
          f"{sum(1 for _ in tasks.members)} task(s); clock: {args.clock} seconds")
    rows = []
    for backend in args.backend:
        start, fsecs, ffits = fast_path(backend, base, recs[: args.fast], tasks)
        dsecs, dfits = disk_path(backend, base, recs[: args.disk], tasks, work)
        fresh = lambda: SplitTasks.build((FitnessSuite(suite=suite),), split, root, limit)  # noqa: E731
        rsecs, rfits = disk_path(backend, base, recs[: args.disk], tasks, work, rebuild=fresh)
        same = all(abs(a - b) < 1e-9 and a == c for a, b, c in zip(ffits, dfits, rfits, strict=False))
        fast_cpm = 60 * len(fsecs) / sum(fsecs)
        fast_total = 60 * len(fsecs) / (sum(fsecs) + start)
        disk_cpm, rebuilt_cpm = 60 * len(dsecs) / sum(dsecs), 60 * len(rsecs) / sum(rsecs)
        rows.append((backend, "in-memory + live swap", len(fsecs), f"{start:.1f}", f"{sum(fsecs) / len(fsecs):.2f}",
                     f"{fast_cpm:.1f}", f"{fast_total:.1f}", f"{fast_cpm / disk_cpm:.1f}x",
                     f"{fast_cpm / rebuilt_cpm:.1f}x", "yes" if same else "NO"))
        rows.append((backend, "merge_to_folder + fresh engine, tasks shared", len(dsecs), "-",
                     f"{sum(dsecs) / len(dsecs):.2f}", f"{disk_cpm:.1f}", f"{disk_cpm:.1f}", "1.0x", "", ""))
        rows.append((backend, "merge_to_folder + fresh engine + fresh tasks", len(rsecs), "-",
                     f"{sum(rsecs) / len(rsecs):.2f}", f"{rebuilt_cpm:.1f}", f"{rebuilt_cpm:.1f}", "", "1.0x", ""))
    head = ("backend", "path", "cands", "engine start s", "s/cand", "cand/min", "cand/min incl. start",
            "vs tasks shared", "vs fresh tasks", "same scores")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"machine after: {machine()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
