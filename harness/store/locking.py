"""A cross-process readers-writer lock around the DuckDB file.

DuckDB lets one process open a file read-write, or many open it read-only, never both. Every harness process
therefore takes this lock before it opens the file and holds it only for one short transaction: writers
exclusively, readers shared. A writer that is waiting closes the gate to new readers so a busy dashboard
cannot starve an evaluation. Waiting is polling with jittered exponential back-off, counted in `LockStats`.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass
class LockStats:
    """What waiting cost this process: how many times it backed off, and for how long in total."""

    acquisitions: int = 0
    retries: int = 0
    waited_s: float = 0.0


def backoff_delays(first: float = 0.002, cap: float = 0.25) -> Iterator[float]:
    """Jittered exponential back-off: first, 2*first, ... capped, each scaled by a random factor in [0.5, 1.5)."""
    delay = first
    while True:
        yield delay * (0.5 + random.random())
        delay = min(delay * 2, cap)


def _open_lock_file(path: Path, reader: bool = False) -> int | None:
    """The lock file's descriptor. A reader on read-only media (or in a folder it may not write) uses the lock
    file if one is there, and none if not: where nobody can create a lock file, nobody can write the store."""
    import errno

    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if reader and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            try:
                return os.open(path, os.O_RDONLY)
            except OSError:
                return None
        raise HarnessError(
            f"cannot create the lock file {path} ({exc.strerror})",
            "make the results folder writable or point --db / HARNESS_DB elsewhere",
        ) from exc


def _acquire(fd: int, mode: int, stats: LockStats, deadline: float, what: Path) -> None:
    for delay in backoff_delays():
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"timed out waiting for the lock on {what}",
                    "another harness process holds the store; wait for it or raise --lock-timeout",
                ) from None
            stats.retries += 1
            stats.waited_s += delay
            time.sleep(delay)


@contextmanager
def locked(db_path: Path, exclusive: bool, stats: LockStats, timeout: float) -> Iterator[None]:
    """Hold the store's lock (exclusive for writers, shared for readers) for the body of the with-block."""
    deadline = time.monotonic() + timeout
    gate = _open_lock_file(db_path.with_name(db_path.name + ".gate"), reader=not exclusive)
    lock = _open_lock_file(db_path.with_name(db_path.name + ".lock"), reader=not exclusive)
    if gate is None or lock is None:  # read-only media: no writer can exist
        for fd in (gate, lock):
            if fd is not None:
                os.close(fd)
        stats.acquisitions += 1
        yield
        return
    try:
        _acquire(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, stats, deadline, db_path)
        try:
            _acquire(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, stats, deadline, db_path)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        stats.acquisitions += 1
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(gate)
        os.close(lock)
