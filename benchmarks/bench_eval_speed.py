"""The evaluation rows of issue #19 ("fast at the job users repeat"), each against its peer measured in this run:

  1. fixed cost per model on mmlu: `harness eval --rerun` with every answer cached (57 tasks), CPU s
  2. second model on mmlu smoke (57 tasks, --limit 3: 171 documents, 684 requests), CPU s, zoo-math, after
     another model (zoo-base) ran the same suite
  3. forced re-run (every answer cached) vs cold, from the command line: the ratio of rows 2 and 1
  4. (--real) SmolLM2-135M-Instruct on mmlu 5-shot (split oll_v1), 3 documents per subject (171 documents, 684
     requests): the scorer alone on 4 subjects against main's scorer (--scorer-ref), each in its own process, with
     the largest difference in log-likelihood between the two; then the whole `harness eval` cold (peak RSS, CPU s,
     wall), and `--rerun` with every answer cached (the forced re-run against cold where the model does work)

The peer of rows 1-3 is the old path: harness at --old-ref (default a14ddf1, before the request plan cache, the
continuation-cost scorer and the import-free cached paths), extracted with `git archive` and run the same way in
its own results folder; of row 4's whole run, lm-eval's own `lm_eval` command on the same tasks (--real-peer:
30 min here). Every run is a separate process; CPU s and peak RSS are that process's (os.wait4).

    .venv/bin/python benchmarks/bench_eval_speed.py [--limit 3] [--threads 1] [--real FOLDER [--real-peer]]
"""

from __future__ import annotations

import argparse
import json
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
    cpu, wall, rss, _ = run_out(cmd, code, results, threads)
    return cpu, wall, rss


def run_out(cmd: list[str], code: Path, results: Path, threads: int) -> tuple[float, float, float, str]:
    """As `run`, with the command's standard output and then its standard error."""
    env = {**os.environ, "PYTHONPATH": str(code), "HARNESS_RESULTS": str(results),
           "HARNESS_DB": str(results / "harness.duckdb"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text, problem = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{problem[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1e6, text + problem


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


SCORER_TASKS = ("mmlu_5shot_marketing", "mmlu_5shot_high_school_geography", "mmlu_5shot_sociology",
                "mmlu_5shot_nutrition")
SCORER = """
import json, sys, time
import torch
from lm_eval.tasks import TaskManager
from harness.evaluate.backends.hf_scoring import ContinuationHFLM
from harness.evaluate.plan import make_plan, task_configs
torch.set_num_threads(int(sys.argv[3]))
plan = make_plan("mmlu", sys.argv[4], 3, None, sys.argv[2].split(","))
reqs = []
for task in TaskManager(include_defaults=False).load(task_configs(plan))["tasks"].values():
    task.build_all_requests(limit=3, rank=0, world_size=1)
    reqs += task.instances
lm = ContinuationHFLM(pretrained=sys.argv[1], device="cpu", dtype="float32", batch_size=16)
start = time.process_time()
answers = lm.loglikelihood(reqs, disable_tqdm=True)
print(json.dumps({"cpu": time.process_time() - start, "answers": answers}))
"""


def scorer_rows(folder: Path, threads: int, ref: str, tmp: Path, zero_shot: bool = False) -> list[tuple]:
    """The scorer alone (ContinuationHFLM.loglikelihood on SCORER_TASKS, 5-shot or 0-shot), this tree's against
    `ref`'s."""
    got = {}
    ref_code = tmp / "scorer-ref"
    if not ref_code.exists():
        ref_code.mkdir()
        old_code(ref, ref_code)
    split, tasks = ("test", [t.replace("5shot_", "") for t in SCORER_TASKS]) if zero_shot else ("oll_v1", SCORER_TASKS)
    for side, code in (("harness", REPO), ("main", ref_code)):
        cmd = [PY, "-c", SCORER, str(folder), ",".join(tasks), str(threads), split]
        _, _, rss, out = run_out(cmd, code, tmp / f"scorer-{side}", threads)
        got[side] = (json.loads(next(line for line in out.splitlines() if line.startswith('{"cpu"'))), rss)
    new, old = got["harness"][0], got["main"][0]
    diff = max(abs(a[0] - b[0]) for a, b in zip(new["answers"], old["answers"], strict=True))
    same = all(a[1] == b[1] for a, b in zip(new["answers"], old["answers"], strict=True))
    n = len(new["answers"])
    shots = "0-shot" if zero_shot else "5-shot"
    what = f"scorer alone, {len(tasks)} subjects {shots} ({n} requests), CPU s (peer: {ref}'s scorer)"
    return [(what, new["cpu"], old["cpu"]),
            (f"scorer alone {shots}: peak RSS GB (whole process)", got["harness"][1], got["main"][1]),
            (f"scorer alone {shots}: largest log-likelihood difference {diff:.1e}, greedy flags "
             f"{'identical' if same else 'DIFFER'}", "", "", "")]


def real_rows(folder: Path, threads: int, peer: bool, tmp: Path) -> list[tuple]:
    results = tmp / "real"
    cpu, wall, rss, out = run_out(eval_cmd(folder, "mmlu", 3, "--split", "oll_v1", "--dtype", "float32"), REPO,
                                  results, threads)
    re_cpu, re_wall, _, re_out = run_out(eval_cmd(folder, "mmlu", 3, "--split", "oll_v1", "--dtype", "float32",
                                                  "--rerun"), REPO, results, threads)
    if " 0 new requests" not in re_out:
        raise SystemExit(f"the re-run was not answered from the cache: {re_out[-500:]}")
    name = "SmolLM2 mmlu 5-shot 3/subject"
    rows = [(f"{name}: CPU s", cpu, None), (f"{name}: peak RSS GB", rss, None), (f"{name}: wall s", wall, None)]
    if peer:
        from harness.evaluate.plan import make_plan, task_configs

        tasks = ",".join(str(c["task"]) for c in task_configs(make_plan("mmlu", "oll_v1", 3)))
        include = str(REPO / "suites" / "mmlu")
        cmd = [PY, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
               "--tasks", tasks, "--include_path", include, "--limit", "3", "--device", "cpu", "--batch_size", "16"]
        p_cpu, p_wall, p_rss = run(cmd, REPO, tmp / "real-peer", threads)
        rows = [(rows[0][0], cpu, p_cpu), (rows[1][0], rss, p_rss), (rows[2][0], wall, p_wall)]
    score = " ".join(next(line for line in out.splitlines() if "_aggregate" in line).replace("│", " ").split())
    rows += [(f"{name}: --rerun, every answer cached, CPU s", re_cpu, None),
             (f"{name}: forced re-run vs cold, CPU (wall)", f"{cpu / re_cpu:.1f}x ({wall / re_wall:.1f}x)", "", ""),
             (f"{name}: {score.strip()}", "", "", "")]
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
    ap.add_argument("--scorer-ref", default="dbe08f7", help="--real: the commit whose scorer is the peer")
    ap.add_argument("--scorer-only", action="store_true", help="--real: only the scorer rows (0-shot and 5-shot)")
    ap.add_argument("--skip-zoo", action="store_true")
    args = ap.parse_args()
    print(machine(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        if not args.skip_zoo:
            rows += zoo_rows(args.zoo, args.limit, args.threads, old_code(args.old_ref, Path(tmp)), Path(tmp))
        if args.real:
            rows += scorer_rows(args.real, args.threads, args.scorer_ref, Path(tmp))
            rows += scorer_rows(args.real, args.threads, args.scorer_ref, Path(tmp), zero_shot=True)
            if not args.scorer_only:
                rows += real_rows(args.real, args.threads, args.real_peer, Path(tmp))
    show(rows)


if __name__ == "__main__":
    main()
