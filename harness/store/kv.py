"""Key-value files: the request cache (model answers) and the judge's text cache are SQLite tables of
key -> text in WAL mode, safe across processes. All their SQL is here; callers encode and decode values.

    kv = KVFile(path)              # creates the table if needed
    kv.get_many(keys) -> {key: text}
    kv.put_many({key: text})       # one transaction
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds


class KVFile:
    def __init__(self, path: Path, table: str = "kv", synchronous: str = "NORMAL") -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.table = table
        self.con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        found: dict[str, str] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM {self.table} WHERE key IN ({marks})"
            found.update(self.con.execute(sql, chunk).fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        self.con.execute("BEGIN")
        try:
            self.con.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)", list(items.items()))
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        self.con.close()
