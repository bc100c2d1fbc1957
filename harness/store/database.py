"""Opening the DuckDB file: validation, creation, migrations, and short locked connections."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harness.atomic import atomic_file
from harness.errors import HarnessError
from harness.store.locking import LockStats, backoff_delays, locked
from harness.store.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import duckdb

T = TypeVar("T")
FIX_FOREIGN = "point --db (or HARNESS_DB) at a harness store, or move the file away to start a new one"


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflict" in text or "could not set" in text)


# A store is data: the views or macros a crafted file might hold cannot read other files on this machine, nor make
# DuckDB install or load an extension (docs/security.md).
DATA_ONLY = {"enable_external_access": False, "autoinstall_known_extensions": False,
             "autoload_known_extensions": False}


def _connect(path: Path, read_only: bool, stats: LockStats, timeout: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retrying while a process that does not use our lock holds the file."""
    import duckdb

    deadline = time.monotonic() + timeout
    for delay in backoff_delays():
        try:
            return duckdb.connect(str(path), read_only=read_only, config=DATA_ONLY)
        except duckdb.Error as exc:
            if _is_lock_conflict(exc) and time.monotonic() < deadline:
                stats.retries += 1
                stats.waited_s += delay
                time.sleep(delay)
                continue
            if _is_lock_conflict(exc):
                raise HarnessError(f"{path} is locked by another program", "close it and retry") from exc
            raise HarnessError(f"{path} is not a readable DuckDB database ({_first_line(exc)})", FIX_FOREIGN) from exc
    raise AssertionError("unreachable")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__


def schema_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The version recorded in the file; 0 for an empty database. Refuses foreign databases."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if not tables:
        return 0
    if "meta" not in tables:
        raise HarnessError(f"{path} is a DuckDB database but not a harness store", FIX_FOREIGN)
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()  # no result left open
    row = rows[0] if rows else None
    if row is None:
        raise HarnessError(f"{path} has a meta table but no schema version", FIX_FOREIGN)
    return int(row[0])


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Bring the schema up to SCHEMA_VERSION in one transaction; returns the version found."""
    found = schema_version(con, path)
    if found > SCHEMA_VERSION:
        raise HarnessError(
            f"{path} was written by a newer harness (schema v{found}, this one knows v{SCHEMA_VERSION})",
            "upgrade harness (pip install -U harness) or use another --db",
        )
    if found == SCHEMA_VERSION:
        return found
    con.execute("SET enable_progress_bar = false")  # a back-fill takes seconds: no bar on stdout, where --json goes
    con.execute("BEGIN TRANSACTION")
    try:
        for statements in MIGRATIONS[found:]:
            for step in statements:
                if callable(step):
                    step(con)
                else:
                    con.execute(step)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
        from harness.store.suite_se import mark_before_v5, mark_filled

        if found == 0:  # a new store holds no run written before v5: nothing for fill_question_stderr to compute
            mark_filled(con)
        elif found < 5:  # its runs have no question-clustered stderr: readers compute it until a writer fills it
            mark_before_v5(con)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return found


def ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"cannot create the results folder {path.parent} ({exc.strerror})",
            "make it writable or point --db / HARNESS_DB at a writable place",
        ) from exc
    if not os.access(path.parent, os.W_OK):
        raise HarnessError(
            f"the results folder {path.parent} is not writable",
            "make it writable or point --db / HARNESS_DB at a writable place",
        )


def _create(path: Path, stats: LockStats, timeout: float) -> None:
    """Create a new store atomically: build it beside the target, then move it into place."""
    with atomic_file(path) as tmp:
        try:
            con = _connect(tmp, False, stats, timeout)
            try:
                migrate(con, tmp)
            finally:
                con.close()
        finally:
            Path(str(tmp) + ".wal").unlink(missing_ok=True)


class Database:
    """A DuckDB file opened for one short transaction at a time, under the cross-process lock.

    Nested use in one thread shares the open connection: a read inside a write (or inside another read) reuses
    it, and a write inside a write joins the outer transaction. A write inside a read is refused: a read-only
    connection cannot write, and taking the writer lock then would deadlock on our own shared lock.
    """

    def __init__(self, path: Path, timeout: float = 300.0) -> None:
        self.path = path
        self.timeout = timeout
        self.stats = LockStats()
        self._checked = False
        self._local = threading.local()

    def _active(self) -> tuple[duckdb.DuckDBPyConnection, bool] | None:
        return getattr(self._local, "active", None)

    def _prepare(self) -> None:
        """Create or migrate the file once per process (under the writer lock)."""
        if self._checked:
            return
        ensure_parent(self.path)
        with locked(self.path, True, self.stats, self.timeout):
            if not self.path.exists():
                _create(self.path, self.stats, self.timeout)
            else:
                con = _connect(self.path, False, self.stats, self.timeout)
                try:
                    migrate(con, self.path)
                finally:
                    con.close()
        self._checked = True

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success, rolled back on error."""
        active = self._active()
        if active is not None:
            if not active[1]:
                raise HarnessError(f"a write to {self.path} was started inside a read of it",
                                   "finish the read (leave its with-block) before writing")
            yield active[0]
            return
        self._prepare()
        with locked(self.path, True, self.stats, self.timeout):
            con = _connect(self.path, False, self.stats, self.timeout)
            self._local.active = (con, True)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                self._local.active = None
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; the store must exist (readers never create or migrate it)."""
        active = self._active()
        if active is not None:
            yield active[0]
            return
        if not self.path.exists():
            raise HarnessError(
                f"no harness store at {self.path}", "run a command that writes (harness db info) or pass --db"
            )
        if not self._checked:  # the first read checks the schema version on the connection it then uses
            with locked(self.path, False, self.stats, self.timeout):
                con = _connect(self.path, True, self.stats, self.timeout)
                try:
                    current = schema_version(con, self.path) == SCHEMA_VERSION
                except BaseException:
                    con.close()
                    raise
                if current:
                    self._checked = True
                    yield from self._reading(con)
                    return
                con.close()
            self._prepare()  # migrates an older store, refuses a newer one
        with locked(self.path, False, self.stats, self.timeout):
            yield from self._reading(_connect(self.path, True, self.stats, self.timeout))

    @contextmanager
    def alongside(self, con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T],
                  ) -> Iterator[Callable[[], T]]:
        """Inside `with db.read() as con`: `work(connection)` on a second connection in a thread, so a long query
        runs while the caller reads and computes (DuckDB executes without the GIL; a scan of one row group uses
        one core): `with db.alongside(con, q) as result: ...; value = result()`. Both connections read the same
        data: read-only, under the one shared lock, so no writer of ours commits between them. Inside a write,
        `work` runs at once on the write's connection (another would miss its uncommitted rows)."""
        active = self._active()
        if active is None or active[0] is not con:
            raise HarnessError("alongside() needs the connection of an open read", "call it inside db.read()")
        if active[1]:
            value = work(con)
            yield lambda: value
            return
        second = con.cursor()
        try:
            with _Beside(lambda: work(second)) as result:
                yield result
        finally:
            second.close()

    def _reading(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        self._local.active = (con, False)
        try:
            yield con
        finally:
            self._local.active = None
            con.close()


class _Beside:
    """`work()` in a thread from entering to leaving; calling the object waits for its value (or raises its error).
    Leaving always waits, so what it reads is never closed under it."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._work, self._box = work, {}
        self._thread = threading.Thread(target=self._run, name="harness-read", daemon=True)

    def _run(self) -> None:
        try:
            self._box["value"] = self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by __call__
            self._box["error"] = exc

    def __enter__(self) -> _Beside:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()

    def __call__(self) -> object:
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["value"]
