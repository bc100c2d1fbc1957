"""`harness merge RECIPE` answered at once when that merge is already complete, without the full command line.

The full command (merge_cmds.py) remembers each answer it prints in results/cache/merge_answers.json (through
identity's `memo`: under a file lock, written atomically), keyed by what the answer depends on: the recipe file's
path and bytes, the working folder (references may be relative to it), --out, --seed, the store's and the results'
paths, and the installed mergekit's and torch's releases (a merge id holds them). An entry also holds fingerprints:
the store file's (size, mtime, inode, and its WAL's), each parent folder's and the output folder's
(`files_signature`: names, sizes and mtimes, as the normal path checks them).

`answer_merge` prints the remembered answer only for exactly `harness merge RECIPE [--out DIR] [--seed N] [--json]`
with every fingerprint unchanged, of a merge whose recipe passed this release's recipe checks (harness.merge.checks
`checked`: an answer remembered before a check existed is not given). The store stays the source of truth: any
write to it, a changed parent, a missing output folder, an unchecked recipe, an unknown flag or anything unexpected
falls through to the normal path, which checks, answers from the store and remembers again. This module imports no
typer, duckdb, pydantic, yaml, torch or mergekit.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.hashing import hash_json
from harness.identity import files_signature, memo
from harness.merge.checks import checked
from harness.paths import default_db_path, results_dir

ANSWERS_MEMO = "merge_answers"


def answer_merge(argv: list[str]) -> bool:
    """Print the remembered answer of `harness merge ...` if it still holds; False (nothing printed) otherwise."""
    t0 = time.perf_counter()
    try:
        args = parse_merge_args(argv)
        if args is None:
            return False
        entry = memo(ANSWERS_MEMO).get(answer_key(*args[:3]))
        if not isinstance(entry, dict) or not still_holds(entry) or not checked(entry["answer"]["model_id"]):
            return False  # unchecked: remembered before a recipe check existed; the normal path checks it
        answer = dict(entry["answer"])
    except Exception:  # noqa: BLE001 (a cache: whatever is odd, the normal path answers and reports)
        return False
    answer["seconds"] = round(time.perf_counter() - t0, 3)
    print_answer(answer, "cached", as_json=args[3])
    return True


def parse_merge_args(argv: list[str]) -> tuple[str, str | None, int, bool] | None:
    """(recipe, out, seed, as_json) for `merge RECIPE [--out DIR] [--seed N] [--json]`, else None."""
    if not argv or argv[0] != "merge":
        return None
    recipe: str | None = None
    values: dict[str, str] = {}
    as_json = False
    rest = argv[1:]
    i = 0
    while i < len(rest):
        a = rest[i]
        name, eq, value = a.partition("=")
        if a == "--json":
            as_json = True
        elif name in ("--out", "--seed") and name not in values:
            if not eq:
                if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
                    return None
                i, value = i + 1, rest[i + 1]
            values[name] = value
        elif a.startswith("-") or recipe is not None:
            return None
        else:
            recipe = a
        i += 1
    seed = values.get("--seed", "0")
    if recipe is None or not seed.isdigit() or int(seed) >= 2**32 or values.get("--out", "x") == "":
        return None
    if not recipe.endswith((".yaml", ".yml")) or not Path(recipe).is_file():
        return None
    return recipe, values.get("--out"), int(seed), as_json


def answer_key(recipe: str, out: str | None, seed: int) -> str:
    """What a merge's answer depends on besides the fingerprints checked in `still_holds`."""
    path = Path(recipe).resolve()
    return hash_json({
        "recipe": str(path), "text": hashlib.sha256(path.read_bytes()).hexdigest(), "cwd": os.getcwd(),
        "out": str(Path(out).resolve()) if out else None, "seed": seed,
        "db": str(default_db_path().resolve()), "results": str(results_dir().resolve()),
        "engines": [dist_info(p) for p in ENGINES],
    })


ENGINES = ("mergekit", "torch")  # whose versions a merge id holds (harness.merge.resolve.plan_merge)


def dist_info(package: str) -> list[str] | None:
    """The dist-info folder names (name-version) beside the `package` that an import would find (the first sys.path
    entry holding it), read without importing it or importlib.metadata (70 modules): an upgrade is another key."""
    for entry in sys.path:
        site = Path(entry or ".")
        if (site / package).is_dir():
            return sorted(n for n in os.listdir(site) if n.startswith(f"{package}-") and n.endswith(".dist-info"))
    return None


def store_state() -> list[Any]:
    """The store file's and its write-ahead log's fingerprints: any write to the store changes them."""
    db = default_db_path()
    state: list[Any] = []
    for f in (db, db.with_name(db.name + ".wal")):
        try:
            st = f.stat()
            state.append([f.name, st.st_size, st.st_mtime_ns, st.st_ino])
        except FileNotFoundError:
            state.append([f.name, None])
    return state


def still_holds(entry: dict[str, Any]) -> bool:
    if entry.get("store") != store_state():
        return False
    folders = {entry["answer"]["path"]: entry["folder_sig"], **entry["parent_sigs"]}
    for folder, sig in folders.items():
        if not sig or not Path(folder).is_dir() or files_signature(Path(folder)) != sig:
            return False
    return True


def remember_merge(recipe: str, out: str | None, seed: int, answer: dict[str, Any],
                   parent_sigs: dict[str, str | None]) -> None:
    """Remember the answer of a merge that is complete now (the full command calls this once it has printed)."""
    try:
        key = answer_key(recipe, out, seed)
        entry = {"store": store_state(), "answer": {**answer, "cached": True},
                 "folder_sig": files_signature(Path(answer["path"])), "parent_sigs": parent_sigs}
    except OSError:
        return
    memo(ANSWERS_MEMO, key, entry)


def merge_lines(answer: dict[str, Any], state: str) -> list[str]:
    """The human answer: the merge's id, state and folder, then one line per parent."""
    lines = [f"{answer['model_id'][:12]} {state}: {answer['path']}"]
    for p in answer["parents"]:
        lines.append(f"  {p['role']:<6} {p['name'] or p['path']} ({p['model_id'][:12]})")
    return lines


def print_answer(answer: dict[str, Any], state: str, as_json: bool) -> None:
    from harness.cli.output import print_json

    if as_json:
        print_json(answer)
        return
    for line in merge_lines(answer, state):
        print(line)
