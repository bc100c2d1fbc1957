"""A small persistent cache of answers and judgments (a harness.store.kv file: SQLite in WAL mode, safe across
processes).

Keys are content hashes of everything that determines the text: re-judging with another judge reuses the
answers, and a killed run re-run picks up every answer and judgment it already has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.hashing import hash_json
from harness.store.kv import KVFile


class TextCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        KVFile(path).close()  # create it now: a folder that cannot be written fails before any answer is made

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        return hash_json(parts)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        kv = KVFile(self.path)
        try:
            found = {k: json.loads(v) for k, v in kv.get_many(keys).items()}
        finally:
            kv.close()
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        kv = KVFile(self.path)
        try:
            kv.put_many({k: json.dumps(v) for k, v in items.items()})
        finally:
            kv.close()
