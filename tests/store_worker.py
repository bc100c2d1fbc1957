"""A real process that uses the store the way `harness eval` or the dashboard does (for test_store_concurrency).

    python -m tests.store_worker write DB WORKER_ID RUNS SAMPLES_PER_RUN
    python -m tests.store_worker read DB SECONDS
    python -m tests.store_worker resume DB RUNS SAMPLES_PER_RUN   # the runs not complete yet, one line per run done
    python -m tests.store_worker hold DB RUN_ID SAMPLES           # finish_run in a transaction left open: killed there
    python -m tests.store_worker fill DB CHUNK KILL_AFTER         # the pre-v5 fill, SIGKILLed after KILL_AFTER chunks

write and read print one JSON line of figures (operations, rows, lock retries, seconds waited) and exit 0, or
non-zero with the error, which the test shows. resume and hold write what `harness eval` writes for a run (start_run,
then scores and samples in finish_run's one transaction), the same rows for a run id in every process, so a store
killed and resumed can be compared with one written without a kill.
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


def run_rows(run_id: str, per_run: int) -> tuple[RunRecord, list[Score], list[Sample]]:
    """A run's record, task scores and samples: four tasks, one row per document, the same in every process."""
    i = int(run_id.rsplit("-", 1)[1])
    samples = [Sample(f"t{d % 4}", d // 4, "acc", float((d * 7 + i) % 3 == 0), prediction=f"answer {d}",
                      target=str(d % 5), extra={"d": d}) for d in range(per_run)]
    by_task: dict[str, list[float]] = {}
    for x in samples:
        by_task.setdefault(x.task, []).append(x.score)
    scores = [Score(t, "acc", sum(v) / len(v), 0.01, len(v)) for t, v in sorted(by_task.items())]
    run = RunRecord(run_id, "model-r", f"suite{i % 3}", "hf", "test", split="public", settings={"i": i})
    return run, scores, samples


def resume(db: str, runs: int, per_run: int) -> None:
    store = Store(db)
    store.add_model(ModelRecord("model-r", "mr", None, "source"))
    for i in range(runs):
        run_id = f"run-{i}"
        found = store.get_run(run_id)
        if found is not None and found.status == "complete":
            continue
        run, scores, samples = run_rows(run_id, per_run)
        store.start_run(run)
        store.finish_run(run_id, scores, samples)
        print(run_id, flush=True)


def hold(db: str, run_id: str, per_run: int) -> None:
    store = Store(db)
    store.add_model(ModelRecord("model-r", "mr", None, "source"))
    run, scores, samples = run_rows(run_id, per_run)
    store.start_run(run)
    with store.writing():  # finish_run joins this transaction: its rows are written, and never committed
        store.finish_run(run_id, scores, samples)
        print("holding", flush=True)
        time.sleep(600)


def fill(db: str, chunk: int, kill_after: int) -> None:
    """The pre-v5 question-stderr fill (`harness db info`'s), in chunks of `chunk` runs; the process kills itself
    with SIGKILL once `kill_after` chunks are committed, as a user's kill would stop it between two chunks."""
    import os
    import signal

    from harness.run_questions import run_questions

    chunks = 0

    def after_chunk(done: int, total: int) -> None:
        nonlocal chunks
        chunks += 1
        print(f"chunk {chunks}: {done}/{total}", flush=True)
        if chunks == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    Store(db).fill_question_stderr(run_questions, chunk=chunk, progress=after_chunk)


def main(argv: list[str]) -> None:
    if argv[0] == "fill":
        fill(argv[1], int(argv[2]), int(argv[3]))
        return
    if argv[0] == "resume":
        resume(argv[1], int(argv[2]), int(argv[3]))
        return
    if argv[0] == "hold":
        hold(argv[1], argv[2], int(argv[3]))
        return
    if argv[0] == "write":
        out = write(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        out = read(argv[1], float(argv[2]))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
