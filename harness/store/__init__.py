"""The results store: one DuckDB file holding models, lineage, runs, scores, samples and selections.

    from harness.store import Store
    store = Store()                 # results/harness.duckdb, or $HARNESS_DB
    store.get_model("zoo-math")

Every method opens the file for one short transaction under a cross-process lock (see locking.py), so several
`harness eval` processes and a dashboard can use one file at once.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.paths import default_db_path
from harness.store.database import Database
from harness.store.models import ModelsMixin
from harness.store.records import AGGREGATE_TASK, LineageEdge, ModelRecord, RunRecord, Sample, Score, Selection
from harness.store.runs import ChecksMixin, RunsMixin
from harness.store.schema import SCHEMA_VERSION

__all__ = [
    "AGGREGATE_TASK", "SCHEMA_VERSION", "LineageEdge", "ModelRecord", "RunRecord", "Sample", "Score", "Selection",
    "Store",
]


class Store(ModelsMixin, RunsMixin, ChecksMixin):
    """The typed query API over the store that the CLI, the dashboard and the tests share."""

    def __init__(self, path: str | Path | None = None, lock_timeout: float = 300.0) -> None:
        self.path = Path(path) if path else default_db_path()
        self.db = Database(self.path, timeout=lock_timeout)

    @classmethod
    def existing(cls, path: str | Path | None = None) -> Store:
        """The store at `path` (default: --db / $HARNESS_DB / results/harness.duckdb) for a command that only reads:
        it is never created (a mistyped --db says so instead of showing an empty store)."""
        store = cls(path)
        if not store.path.is_file():
            raise HarnessError(f"no harness store at {store.path}",
                               "check --db / HARNESS_DB (a store is created by a command that writes: harness eval, "
                               "harness merge, harness db info)")
        return store

    def init(self) -> int:
        """Create or migrate the file now; returns the schema version."""
        self.db._prepare()
        return SCHEMA_VERSION

    def reading(self):  # noqa: ANN201 (a context manager)
        """Several store calls in one read-only snapshot and one connection: `with store.reading(): ...`."""
        return self.db.read()

    def writing(self):  # noqa: ANN201 (a context manager)
        """Several store calls in one transaction and one connection: `with store.writing(): ...` (all or none)."""
        return self.db.write()

    def schema_version(self) -> int:
        with self.db.read() as con:
            return int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    def notes(self) -> list[str]:
        """One line per migration that changed what stored rows mean (meta keys 'note:vN'), oldest first."""
        with self.db.read() as con:
            rows = con.execute("SELECT key, value FROM meta WHERE key LIKE 'note:v%'").fetchall()
        return [f"{k.removeprefix('note:')}: {v}" for k, v in sorted(rows, key=lambda r: int(r[0][6:]))]
