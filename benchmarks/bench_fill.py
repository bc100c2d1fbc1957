"""The pre-v5 question-stderr fill and a cold leaderboard read of a store written before v5, timed.

    python benchmarks/bench_fill.py /tmp/fill/bench --models 10000

Writes a synthetic store (benchmarks/gen_store.py: 6 runs a model, 67 documents a run), turns it into the file a v4
harness wrote (tests/factories.py downgrade_store) and migrates it, then times, each in its own process as a user
runs them: `harness leaderboard --json` on the unfilled store (the read computes every old run's clustered stderr in
memory, writing nothing), `harness db info` (the fill, committed a chunk of runs at a time), and the leaderboard
again on the filled store. Figures: docs/store.md (schema v5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _timed(db: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "--db", str(db), *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a new folder for the store")
    ap.add_argument("--models", type=int, default=10000)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from benchmarks.gen_store import build
    from harness.store import Store
    from tests.factories import downgrade_store

    args.folder.mkdir(parents=True)
    db = args.folder / "harness.duckdb"
    build(db, args.models, docs=67)
    downgrade_store(db, 4)
    runs = Store(db).counts()["runs"]  # migrates to the current schema: marked before v5, not filled
    unfilled = _timed(db, "leaderboard", "--json")
    fill = _timed(db, "db", "info", "--json")
    filled = _timed(db, "leaderboard", "--json")
    print(f"{args.models:,} models, {runs:,} runs: leaderboard before the fill {unfilled:.1f} s, "
          f"harness db info (the fill) {fill:.1f} s, leaderboard after {filled:.1f} s")


if __name__ == "__main__":
    main()
