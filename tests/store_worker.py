"""A real process that uses the store the way `harness eval` or the dashboard does (for test_store_concurrency).

    python -m tests.store_worker write DB WORKER_ID RUNS SAMPLES_PER_RUN
    python -m tests.store_worker read DB SECONDS

Prints one JSON line of figures (operations, rows, lock retries, seconds waited) and exits 0, or non-zero with the
error, which the test shows.
"""

from __future__ import annotations

import json
import sys
import time

from harness.store import ModelRecord, RunRecord, Sample, Score, Store


def write(db: str, worker: str, runs: int, per_run: int) -> dict:
    store = Store(db)
    model_id = f"model-{worker}"
    store.add_model(ModelRecord(model_id, f"m{worker}", None, "source"))
    for i in range(runs):
        run_id = f"run-{worker}-{i}"
        store.start_run(RunRecord(run_id, model_id, "suite", "hf", "test"))
        samples = [Sample("task", d, "acc", float(d % 2)) for d in range(per_run)]
        store.finish_run(run_id, [Score("task", "acc", 0.5, 0.01, per_run)], samples)
    st = store.db.stats
    return {"role": "writer", "runs": runs, "rows": runs * per_run, "locks": st.acquisitions,
            "retries": st.retries, "waited_s": round(st.waited_s, 3)}


def read(db: str, seconds: float) -> dict:
    store = Store(db)
    reads, seen = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        board = store.leaderboard()
        seen = max(seen, len(board))
        store.counts()
        reads += 1
    st = store.db.stats
    return {"role": "reader", "reads": reads, "max_rows_seen": seen, "locks": st.acquisitions,
            "retries": st.retries, "waited_s": round(st.waited_s, 3)}


def main(argv: list[str]) -> None:
    if argv[0] == "write":
        out = write(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        out = read(argv[1], float(argv[2]))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
