"""The evaluation rows of issue #19 ("fast at the job users repeat"), each against its peer measured in this run:

  1. fixed cost per model on mmlu: `harness eval --rerun` with every answer cached (57 tasks), CPU s
  2. second model on mmlu smoke (57 tasks, --limit 3: 171 documents, 684 requests), CPU s, zoo-math, after
     another model (zoo-base) ran the same suite
  3. forced re-run (every answer cached) vs cold, from the command line: the ratio of rows 2 and 1
  4. (--real) SmolLM2-135M-Instruct on mmlu, 3 documents per subject: peak RSS and CPU s

The peer of rows 1-3 is the old path: harness at --old-ref (default a14ddf1, before the request plan cache, the
continuation-cost scorer and the import-free cached paths), extracted with `git archive` and run the same way in
its own results folder; of row 4, lm-eval's own `lm_eval` command on the same tasks (--real-peer: 30 min here).
Every run is a separate `harness eval` process; CPU s and peak RSS are that process's (os.wait4).

    .venv/bin/python benchmarks/bench_eval_speed.py [--limit 3] [--threads 1] [--real FOLDER [--real-peer]]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def machine(threads: int) -> str:
    load = os.getloadavg()[0]
    return (f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
            f"{threads} torch thread(s), load average {load:.1f} at start")


def run(cmd: list[str], code: Path, results: Path, threads: int) -> tuple[float, float, float]:
    """(CPU s, wall s, peak RSS GB) of one command, with harness imported from `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "HARNESS_RESULTS": str(results),
           "HARNESS_DB": str(results / "harness.duckdb"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1e6


def old_code(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref, "harness", "suites"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def eval_cmd(model: Path, suite: str, limit: int, *extra: str) -> list[str]:
    return [PY, "-m", "harness.cli", "eval", str(model), "--suite", suite, "--limit", str(limit),
            "--device", "cpu", *extra]


def zoo_rows(zoo: Path, limit: int, threads: int, old: Path, tmp: Path) -> list[tuple]:
    rows = []
    figures: dict[str, dict[str, tuple]] = {}
    for side, code in (("harness", REPO), ("old", old)):
        results = tmp / f"results-{side}"
        run(eval_cmd(zoo / "zoo-base", "mmlu", limit), code, results, threads)  # the first model
        cold = run(eval_cmd(zoo / "zoo-math", "mmlu", limit), code, results, threads)
        rerun = run(eval_cmd(zoo / "zoo-math", "mmlu", limit, "--rerun"), code, results, threads)
        again = run(eval_cmd(zoo / "zoo-math", "mmlu", limit), code, results, threads)
        figures[side] = {"cold": cold, "rerun": rerun, "again": again}
    new, old_f = figures["harness"], figures["old"]
    rows.append(("fixed cost per model, mmlu --rerun, all cached (CPU s)", new["rerun"][0], old_f["rerun"][0]))
    rows.append((f"second model, mmlu --limit {limit}, zoo-math (CPU s)", new["cold"][0], old_f["cold"][0]))
    rows.append(("same command again, complete run found (CPU s)", new["again"][0], old_f["again"][0]))
    for side, f in (("harness", new), ("old", old_f)):
        rows.append((f"{side}: forced re-run vs cold, CPU (wall)",
                     f"{f['cold'][0] / f['rerun'][0]:.1f}x ({f['cold'][1] / f['rerun'][1]:.1f}x)", "", ""))
    return rows


def real_rows(folder: Path, threads: int, peer: bool, tmp: Path) -> list[tuple]:
    cpu, wall, rss = run(eval_cmd(folder, "mmlu", 3, "--dtype", "float32", "--no-cache"), REPO, tmp / "real", threads)
    rows = [("SmolLM2 mmlu 3/subject: CPU s", cpu, None), ("SmolLM2 mmlu 3/subject: peak RSS GB", rss, None),
            ("SmolLM2 mmlu 3/subject: wall s", wall, None)]
    if peer:
        from harness.evaluate.plan import make_plan, task_configs

        tasks = ",".join(str(c["task"]) for c in task_configs(make_plan("mmlu", None, 3)))
        include = str(REPO / "suites" / "mmlu")
        cmd = [PY, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
               "--tasks", tasks, "--include_path", include, "--limit", "3", "--device", "cpu", "--batch_size", "16"]
        p_cpu, p_wall, p_rss = run(cmd, REPO, tmp / "real-peer", threads)
        rows = [(rows[0][0], cpu, p_cpu), (rows[1][0], rss, p_rss), (rows[2][0], wall, p_wall)]
    return rows


def show(rows: list[tuple]) -> None:
    print("| measure | harness | peer | ratio |\n| --- | ---: | ---: | --- |")
    for name, ours, peer, *rest in rows:
        if rest:
            print(f"| {name} | {ours} | | |")
            continue
        ratio = f"{peer / ours:.1f}x less" if peer and ours else "-"
        print(f"| {name} | {ours:.2f} | {'' if peer is None else f'{peer:.2f}'} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=Path(os.environ.get("HARNESS_ZOO_CACHE", "/work/zoo-cache")))
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--old-ref", default="a14ddf1")
    ap.add_argument("--real", type=Path, help="the SmolLM2 folder (tests/factories.py real_model_cache)")
    ap.add_argument("--real-peer", action="store_true", help="also run lm-eval's own CLI on it (slow)")
    ap.add_argument("--skip-zoo", action="store_true")
    args = ap.parse_args()
    print(machine(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        if not args.skip_zoo:
            rows += zoo_rows(args.zoo, args.limit, args.threads, old_code(args.old_ref, Path(tmp)), Path(tmp))
        if args.real:
            rows += real_rows(args.real, args.threads, args.real_peer, Path(tmp))
    show(rows)


if __name__ == "__main__":
    main()
