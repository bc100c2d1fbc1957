"""One model identity: a model folder's id is the sha256 of the files that define it (harness.hashing.hash_model_dir),
remembered per (folder, files signature) in one cache file, results/cache/model_ids.json, so a large model is
hashed once. Merge, evaluate and evolve all ask here.

Also the small JSON memos that cache derived facts under results/cache/ (`memo`): read-modify-write under a file
lock, written atomically, so two processes never lose each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.hashing import hash_json, hash_model_dir, model_files
from harness.paths import cache_dir

IDS_MEMO = "model_ids"


def files_signature(path: Path) -> str:
    """A cheap fingerprint of a model folder (names, sizes, mtimes of the files that define it)."""
    rows = [(name, p.stat().st_size, p.stat().st_mtime_ns) for name, p in model_files(path)]
    return hash_json(rows)


def files_sizes(path: Path) -> dict[str, int]:
    """Name -> size of the files that define a model folder: what a merge records of itself (harness_merge.json)
    to tell a damaged copy (a cut shard, a lost file) from the merge, without reading the weights."""
    return {name: p.stat().st_size for name, p in model_files(path)}


def model_id(path: Path, signature: str | None = None) -> str:
    """The folder's content hash, remembered per (resolved folder, files signature)."""
    path = Path(path).resolve()
    key = f"{path}|{signature or files_signature(path)}"
    known = memo(IDS_MEMO).get(key)
    if known is None:
        known = hash_model_dir(path)
        memo(IDS_MEMO, key, known)
    return known


def prefetch_ids(folders: list[Path]) -> None:
    """Hash the folders whose id is not remembered yet, several at once (hashlib releases the GIL), so a merge of
    three new 1 GB parents reads them side by side instead of one after another."""
    known = memo(IDS_MEMO)
    todo = []
    for folder in {Path(f).resolve() for f in folders}:
        if f"{folder}|{files_signature(folder)}" not in known:
            todo.append(folder)
    if len(todo) < 2:
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
        list(pool.map(model_id, todo))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


MEMO_KEEP = 1000  # entries per memo file: a merge answer is ~1 KB, so at most ~1 MB to read


def memo(name: str, key: str | None = None, value: Any = None, keep: int = MEMO_KEEP) -> dict[str, Any]:
    """A small JSON memo under results/cache/<name>.json: read it, or add key -> value. A cache only: a folder that
    cannot be written is not an error. It keeps the `keep` entries written last, so it stays small to read."""
    path = cache_dir() / f"{name}.json"
    if key is None:
        return _read(path)
    try:
        with _locked(path):
            known = _read(path)
            known.pop(key, None)  # re-inserted last: the newest entries are the ones kept
            known[key] = value
            for old in list(known)[:max(0, len(known) - keep)]:
                del known[old]
            write_text_atomic(path, json.dumps(known))
    except OSError:
        known = {key: value}
    return known


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
