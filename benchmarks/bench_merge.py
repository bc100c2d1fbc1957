"""Benchmark `harness merge` against mergekit-yaml, measured in the same run on the same machine.

    .venv/bin/python benchmarks/bench_merge.py                      # tiny llamas built here, 1 GB models for memory
    .venv/bin/python benchmarks/bench_merge.py --models A B C       # your own three models (same architecture)
    .venv/bin/python benchmarks/bench_merge.py --big-gb 0           # skip the ~1 GB peak-memory section

Prints one table: wall times (median of --reps), ratios harness/mergekit (< 1: harness faster), peak RSS of
each merge process against the inputs' total size, and in-memory merge time per candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in bytes, CPU seconds user + system) of one child process.

    The peak is the child's own VmHWM, sampled from /proc while it runs: wait4's ru_maxrss also counts the memory
    of this (forking) process at the fork, which is over a GiB here once the big models were built."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        peak, status, usage = 0, 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, hwm(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        log.seek(0)
        err = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {err[-800:]}")
    return wall, peak, usage.ru_utime + usage.ru_stime


def hwm(pid: int) -> int:
    """VmHWM of a live process in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def recipe(models: list[Path], method: str, seed_density: float = 0.5) -> dict:
    base, *rest = models
    if method == "linear":
        return {"merge_method": "linear", "models": [{"model": str(m), "parameters": {"weight": 1.0}} for m in models]}
    return {"merge_method": method, "base_model": str(base), "models": [
        {"model": str(m), "parameters": {"weight": 0.5, "density": seed_density}} for m in rest]}


def write_yaml(data: dict, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def env_for(results: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_RESULTS": str(results), "HARNESS_DB": str(results / "harness.duckdb"),
            "TOKENIZERS_PARALLELISM": "false"}


def cli_vs_mergekit(models: list[Path], work: Path, reps: int, method: str) -> dict[str, float]:
    """Cold: a fresh results folder per run. Cached: the same recipe again. mergekit has no cache: it re-merges."""
    r = write_yaml(recipe(models, method), work / f"cli_{method}.yaml")
    cold, cached, mk, cached_cpu = [], [], [], []
    for i in range(reps):
        res = work / f"res{i}"
        env = env_for(res)
        mk.append(run_timed([str(BIN / "mergekit-yaml"), str(r), str(work / f"mk{i}"), "--random-seed", "0",
                             "--quiet"], env)[0])
        cold.append(run_timed([str(BIN / "harness"), "merge", str(r), "--seed", "0"], env)[0])
        t, _, cpu = run_timed([str(BIN / "harness"), "merge", str(r), "--seed", "0"], env)
        cached.append(t)
        cached_cpu.append(cpu)
        shutil.rmtree(work / f"mk{i}", ignore_errors=True)
        shutil.rmtree(res, ignore_errors=True)
    return {"mergekit": statistics.median(mk), "cold": statistics.median(cold), "cached": statistics.median(cached),
            "cached_cpu": statistics.median(cached_cpu)}


def make_big_llama(out: Path, tokenizer_from: Path, gb: float, seed: int, dtype: str = "bfloat16") -> Path:
    """A random-weight Llama-shaped folder of about `gb` GB (`dtype`, hidden 2048, intermediate 5632)."""
    import torch
    from safetensors.torch import save_file

    h, inter = 2048, 5632
    width = getattr(torch, dtype).itemsize
    vocab = json.loads((tokenizer_from / "config.json").read_text())["vocab_size"]
    layers = max(1, round(gb * 1e9 / (width * (4 * h * h + 3 * h * inter))))
    out.mkdir(parents=True, exist_ok=True)
    for f in tokenizer_from.iterdir():
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(f, out / f.name)
    cfg = json.loads((tokenizer_from / "config.json").read_text())
    cfg.update(hidden_size=h, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=h // 64,
               num_key_value_heads=h // 64, head_dim=64, torch_dtype=dtype, dtype=dtype)
    (out / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(getattr(torch, dtype))

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=getattr(torch, dtype))

    sd = {"model.embed_tokens.weight": rnd(vocab, h), "lm_head.weight": rnd(vocab, h), "model.norm.weight": ones(h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{n}.weight"] = rnd(h, h)
        sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"] = rnd(inter, h), rnd(inter, h)
        sd[p + "mlp.down_proj.weight"] = rnd(h, inter)
        sd[p + "input_layernorm.weight"] = ones(h)
        sd[p + "post_attention_layernorm.weight"] = ones(h)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def peak_memory(tiny: Path, work: Path, gb: float, dtype: str) -> dict[str, float]:
    """The same linear recipe through mergekit-yaml, then `harness merge` cold (fresh results folder: the parents
    are hashed too) and cached, each a fresh process; mergekit-yaml runs first so the page cache favours neither."""
    big = [make_big_llama(work / f"big{i}", tiny, gb, seed=i, dtype=dtype) for i in range(3)]
    inputs = sum(f.stat().st_size for m in big for f in m.glob("*.safetensors"))
    r = write_yaml({**recipe(big, "linear"), "dtype": dtype}, work / "big.yaml")
    env = env_for(work / "bigres")
    mk_t, mk_rss, mk_cpu = run_timed([str(BIN / "mergekit-yaml"), str(r), str(work / "bigmk"), "--quiet"], env)
    shutil.rmtree(work / "bigmk", ignore_errors=True)
    h_t, h_rss, h_cpu = run_timed([str(BIN / "harness"), "merge", str(r)], env)
    c_t, _, c_cpu = run_timed([str(BIN / "harness"), "merge", str(r)], env)
    (work / "bigres" / "cache" / "merge_answers.json").unlink()  # the next one is answered by the store's path
    s_t, _, s_cpu = run_timed([str(BIN / "harness"), "merge", str(r)], env)
    return {"inputs": inputs, "mk_t": mk_t, "mk_rss": mk_rss, "mk_cpu": mk_cpu, "h_t": h_t, "h_rss": h_rss,
            "h_cpu": h_cpu, "cached_t": c_t, "cached_cpu": c_cpu, "store_t": s_t, "store_cpu": s_cpu}


def in_memory(models: list[Path], work: Path, n: int) -> dict[str, float]:
    """Per-candidate time of a 3-way dare_ties after warm-up, and the folder path's in-process time as peer."""
    from harness.merge import InMemoryMerger, merge_to_folder
    from harness.store import Store

    res = work / "memres"
    os.environ.update(env_for(res))
    store = Store()
    merger = InMemoryMerger(store=store)
    rng = random.Random(0)

    def candidate() -> dict:
        data = recipe(models, "dare_ties")
        for m in data["models"]:
            m["parameters"] = {"weight": round(rng.uniform(0.2, 0.8), 4), "density": round(rng.uniform(0.3, 0.9), 4)}
        return data

    merger.merge(candidate())  # warm-up: parents read once
    mem = []
    for _ in range(n):
        c = candidate()
        t0 = time.perf_counter()
        merger.merge(c)
        mem.append(time.perf_counter() - t0)
    folder = []
    for _ in range(max(2, n // 3)):
        c = candidate()
        t0 = time.perf_counter()
        merge_to_folder(c, store=store)
        folder.append(time.perf_counter() - t0)
    return {"mem": statistics.median(mem), "folder": statistics.median(folder), "n": n,
            "cache_mb": merger.cache.nbytes() / 1e6}


def machine() -> str:
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, load {load}; "
            f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs=3, type=Path, help="three model folders (default: tiny llamas built here)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--big-gb", type=float, default=1.0, help="size of each synthetic model for the memory test")
    ap.add_argument("--big-dtype", default="bfloat16", choices=["bfloat16", "float32"], help="their dtype")
    ap.add_argument("--skip-small", action="store_true", help="only the big-model rows")
    ap.add_argument("--method", default="dare_ties", help="method for the CLI comparison")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    from importlib.metadata import version

    from tests.factories import make_tiny_llama

    work = Path(tempfile.mkdtemp(prefix="bench_merge_"))
    try:
        models = args.models or [make_tiny_llama(work / f"tiny{i}", seed=i) for i in range(3)]
        models = [m.resolve() for m in models]
        size = sum(f.stat().st_size for m in models for f in m.glob("*.safetensors")) / 1e6
        rows = [] if args.skip_small else small_rows(models, work, args)
        if args.big_gb > 0:
            rows += big_rows(peak_memory(models[0], work, args.big_gb, args.big_dtype), args)
        print(f"\nmachine: {machine()}")
        print(f"mergekit {version('mergekit')}; small models: {', '.join(m.name for m in models)} "
              f"({size:.1f} MB in all)\n")
        widths = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(5)]
        for r in [HEAD, tuple("-" * w for w in widths), *rows]:
            print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
        print(f"\nsmall rows: medians of {args.reps} runs (each a fresh process) and {args.candidates} in-memory "
              "candidates; big rows: one run each. ratio = harness / peer; CPU s = user + system of the process "
              "(steadier than wall on a shared machine).")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def small_rows(models: list[Path], work: Path, args: argparse.Namespace) -> list[tuple[str, ...]]:
    cli = cli_vs_mergekit(models, work, args.reps, args.method)
    mem = in_memory(models, work, args.candidates)
    return [
        ("cold `harness merge` vs mergekit-yaml", args.method, f"{cli['cold']:.2f} s", f"{cli['mergekit']:.2f} s",
         f"{cli['cold'] / cli['mergekit']:.2f}"),
        ("cached `harness merge` vs mergekit-yaml", args.method, f"{cli['cached']:.2f} s ({cli['cached_cpu']:.2f} "
         "CPU s)", f"{cli['mergekit']:.2f} s", f"{cli['cached'] / cli['mergekit']:.2f}"),
        ("in-memory per candidate vs folder path (in-process)", "dare_ties 3-way", f"{mem['mem'] * 1e3:.0f} ms",
         f"{mem['folder'] * 1e3:.0f} ms", f"{mem['mem'] / mem['folder']:.2f}"),
    ]


def big_rows(big: dict[str, float], args: argparse.Namespace) -> list[tuple[str, ...]]:
    gib, size = big["inputs"] / 2**30, f"3 x {args.big_gb:g} GB {args.big_dtype}"
    return [
        (f"{size} linear, cold: wall", "linear", f"{big['h_t']:.1f} s", f"{big['mk_t']:.1f} s",
         f"{big['h_t'] / big['mk_t']:.2f}"),
        (f"{size} linear, cold: CPU s", "linear", f"{big['h_cpu']:.1f}", f"{big['mk_cpu']:.1f}",
         f"{big['h_cpu'] / big['mk_cpu']:.2f}"),
        (f"{size}: peak RSS (inputs {gib:.2f} GiB)", "linear",
         f"{big['h_rss'] / 2**30:.2f} GiB = {big['h_rss'] / big['inputs']:.2f} x inputs",
         f"{big['mk_rss'] / 2**30:.2f} GiB = {big['mk_rss'] / big['inputs']:.2f} x inputs",
         f"{big['h_rss'] / big['mk_rss']:.2f}"),
        (f"{size}: cached again", "linear", f"{big['cached_t']:.2f} s ({big['cached_cpu']:.2f} CPU s)",
         f"{big['mk_t']:.1f} s", f"{big['cached_t'] / big['mk_t']:.3f}"),
        (f"{size}: cached, from the store (answers index removed)", "linear",
         f"{big['store_t']:.2f} s ({big['store_cpu']:.2f} CPU s)", f"{big['mk_t']:.1f} s",
         f"{big['store_t'] / big['mk_t']:.3f}"),
    ]


HEAD = ("measure", "recipe", "harness", "peer", "ratio")

if __name__ == "__main__":
    main()
