"""The figures of a `harness dtm` study: sub-model training throughput and the study's wall time by stage.

    python benchmarks/bench_dtm.py examples/dtm_zoo.yaml [--seed N]        # runs (or reuses) the study
    python benchmarks/bench_dtm.py --study results/dtm/<name>-<hash>       # reads a finished study
    python benchmarks/bench_dtm.py --study results/dtm/<name>-<hash> --markdown   # and its tables for the docs

Prints, per fine-tune, examples, steps, tokens, seconds and tokens/s (cached ones left out), the total, and the
wall time split into embedding, training, merging and evaluation, with the machine and its load average. Run it
on a cold results folder (HARNESS_RESULTS) for the cold figures; a cached study prints its first run's timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load(args: argparse.Namespace) -> dict:
    if args.study:
        return json.loads((Path(args.study[0]) / "study.json").read_text())
    sys.path.insert(0, str(REPO))
    from dataclasses import asdict

    from harness.workflows.dtm import run_dtm

    study = run_dtm(args.config, resume=True, seed=args.seed, say=lambda s: print(s, file=sys.stderr))
    return asdict(study)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?")
    ap.add_argument("--study", nargs="+", help="Finished study folders; with several (seeds), the differences "
                    "against vanilla per seed and their mean.")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--markdown", action="store_true", help="Also print the table and the curve as markdown.")
    args = ap.parse_args()
    if args.study and len(args.study) > 1:
        seeds([json.loads((Path(p) / "study.json").read_text()) for p in args.study])
        return
    data = load(args)
    if args.markdown:
        sys.path.insert(0, str(REPO))
        from harness.analysis.study_table import format_markdown

        print(format_markdown(data["rows"]) + "\n\n" + format_markdown(data["curve"]) + "\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} now, "
          f"torch threads {data['config']['threads']}")
    print(f"{'fine-tune':<12}{'examples':>9}{'steps':>7}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}")
    trained = [t for t in data["trained"] if not t["cached"]]
    for t in trained:
        print(f"{t['name']:<12}{t['n_examples']:>9}{t['steps']:>7}{t['tokens']:>9}{t['seconds']:>9.1f}"
              f"{t['tokens_per_s']:>10,.0f}")
    if trained:
        tokens, seconds = sum(t["tokens"] for t in trained), sum(t["seconds"] for t in trained)
        print(f"{'all':<12}{'':>9}{sum(t['steps'] for t in trained):>7}{tokens:>9}{seconds:>9.1f}"
              f"{tokens / seconds:>10,.0f}")
    print("wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in data["seconds"].items()))


def seeds(studies: list[dict]) -> None:
    """Markdown: per recipe and task, the paired difference against vanilla in each seed, and the mean."""
    rows = [r["row"] for r in studies[0]["rows"] + studies[0]["curve"] if r["row"] not in ("vanilla", "vanilla 100%")]
    cols = sorted(studies[0]["rows"][0]["cells"])
    print("| recipe | " + " | ".join(c.split("/")[1] for c in cols) + " | mean |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for label in rows:
        cells, means = [], []
        for c in cols:
            diffs = [next(r for r in s["rows"] + s["curve"] if r["row"] == label)["cells"][c]["diff"] for s in studies]
            means.append(sum(diffs) / len(diffs))
            cells.append(f"{means[-1]:+.1f} ({', '.join(f'{d:+.0f}' for d in diffs)})")
        print(f"| {label} | " + " | ".join(cells) + f" | {sum(means) / len(means):+.1f} |")


if __name__ == "__main__":
    main()
