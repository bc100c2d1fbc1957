"""A small persistent cache of answers and judgments (SQLite in WAL mode, safe across processes).

Keys are content hashes of everything that determines the text: re-judging with another judge reuses the
answers, and a killed run re-run picks up every answer and judgment it already has.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from harness.hashing import hash_json


class TextCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.hits = 0
        self.misses = 0
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        return hash_json(parts)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._connect() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v in con.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk):
                    found[k] = json.loads(v)
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", [(k, json.dumps(v)) for k, v in items.items()])
