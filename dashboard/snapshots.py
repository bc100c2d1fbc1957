"""The overfitting analysis kept on disk per version of the store, so a dashboard (re)started on a store that has
not changed since shows its flags without recomputing them, and a dashboard whose store has just been written can
show the previous version's flags while it computes the new ones (dashboard/queries.py).

A version is the store's fingerprint: size and modification time of the DuckDB file and of its WAL, which every
committed write changes. The twin gaps and the coverage table are kept as Parquet and the flags as JSON (no
pickle), under results/cache/dashboard/, named by the store's path and the fingerprint; older versions of the same
store are removed when a new one is written. Files are written to a temporary name and renamed into place. When the
cache folder cannot be written the analysis is simply computed each time.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.analysis.coverage import CoverageTable
from harness.analysis.flags import Flag
from harness.atomic import atomic_file, write_text_atomic
from harness.hashing import hash_json

if TYPE_CHECKING:
    from harness.analysis.evidence import Data

Analysis = tuple[pd.DataFrame, list[Flag], CoverageTable]


def fingerprint(db: str) -> str:
    """Changes with every committed write to the store (file and WAL sizes and mtimes)."""
    parts = []
    for p in (Path(db), Path(db + ".wal")):
        try:
            st = p.stat()
            parts.append([st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append(None)
    return hash_json(parts)[:16]


def _folder() -> Path:
    from harness.paths import cache_dir

    return cache_dir() / "dashboard"


def _stem(db: str) -> str:
    return "analysis-" + hash_json(str(Path(db).resolve()))[:12]


def load(db: str, version: str) -> Analysis | None:
    """The analysis of this store version, if one is kept on disk."""
    return _read(_folder() / f"{_stem(db)}-{version}")


def latest(db: str) -> Analysis | None:
    """The most recently kept analysis of this store, whatever its version (None if there is none)."""
    kept = sorted(_folder().glob(f"{_stem(db)}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for flags_file in kept:
        found = _read(flags_file.with_suffix(""))
        if found is not None:
            return found
    return None


def compute_and_keep(db: str, version: str, compute: Callable[[], Analysis]) -> Analysis:
    """Compute the analysis of this version and keep it on disk (replacing older versions). One computation per
    store at a time across processes: a page that finds another process (the one `harness dashboard` starts with
    the server) computing waits for it and reads its result instead of computing the same thing again."""
    with _store_lock(db):
        kept = load(db, version)
        if kept is not None:
            return kept
        result = compute()
        try:
            _write(_folder() / f"{_stem(db)}-{version}", *result)
        except OSError:
            pass  # a read-only results folder: the analysis is recomputed next time
        return result


@contextmanager
def _store_lock(db: str) -> Iterator[None]:
    try:
        _folder().mkdir(parents=True, exist_ok=True)
        fd = os.open(_folder() / f"{_stem(db)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only results folder: no coordination, each computes its own
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def analyse_store(db: str) -> Analysis:
    """The twin gaps, flags and coverage of the store as it is now (one read snapshot per step, no Streamlit)."""
    from harness.analysis import evidence
    from harness.store import Store

    return analyse_gathered(evidence.gather(Store(db)))


def analyse_gathered(data: Data) -> Analysis:
    from harness.analysis.coverage import coverage
    from harness.analysis.overfit import THRESHOLDS, analyse_data

    flags = analyse_data(data)
    return data.gaps, flags, coverage(data, THRESHOLDS, flags)


def main(argv: list[str]) -> None:
    """python dashboard/snapshots.py DB: analyse the store and keep the result (started by `harness dashboard`
    beside the server, so the first page that shows flags finds them on disk or waits only for the rest)."""
    db = argv[0]
    compute_and_keep(db, fingerprint(db), lambda: analyse_store(db))


def _read(base: Path) -> Analysis | None:
    try:
        kept = json.loads(base.with_suffix(".json").read_text())
        flags = [Flag(**f) for f in kept["flags"]]  # a list: an older format without coverage, computed again
        cover = (CoverageTable.from_dicts(kept["coverage"]) if "coverage" in kept  # written before the Parquet
                 else CoverageTable.from_parquet(_coverage_file(base)))
        return pd.read_parquet(base.with_suffix(".parquet")), flags, cover
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _coverage_file(base: Path) -> Path:
    return base.with_name(base.name + "-coverage.parquet")


def _write(base: Path, gaps: pd.DataFrame, flags: list[Flag], cover: CoverageTable) -> None:
    with atomic_file(base.with_suffix(".parquet"), suffix=".parquet") as tmp:
        gaps.to_parquet(tmp, index=False)
    with atomic_file(_coverage_file(base), suffix=".parquet") as tmp:
        cover.to_parquet(tmp)  # columns: 0.01 CPU s at 10,000 models, where the rows as JSON objects took 0.11
    # the JSON last: it marks the set complete
    write_text_atomic(base.with_suffix(".json"), json.dumps({"flags": [vars(f) for f in flags]}, default=str))
    # the flags' fields as they are: what asdict gives (no dataclass inside), without its deep copy of the evidence
    stem = base.name.rsplit("-", 1)[0]
    for old in base.parent.glob(f"{stem}-*"):
        if not old.name.startswith(base.name):
            old.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
