"""Twin maps: which public item each twin item was made from (docs/overfitting.md "Twin maps").

A twin relation in suite.yaml (`harness.suite_schema.TwinSpec`) that pairs items names a map file of the public
suite, built once from question text by scripts/build_twin_maps.py:

    {"suite": "mmlu", "kind": "permuted", "twin": "mmlu_permuted:test", "relation": "aligned",
     "public_sizes": {"mmlu_anatomy": 135, ...},
     "tasks": {"mmlu_permuted_anatomy": {"public_task": "mmlu_anatomy", "seeds": [0, 1, 2, ...]}, ...}}

`seeds[i]` is the public doc id (lm-eval's doc_id, the index of the document after the task's process_docs) of
twin doc i of that twin task, or null when twin doc i has no public seed. An aligned map is a bijection: every
public item is the seed of exactly one twin item. A map that does not match its data stops the analysis with one
line naming the suite and the id (exit 2): nothing is paired wrongly. A run that scored an item beyond the map
(other data than the map was built from) is not paired (harness/analysis/twin_gaps.py).

    twin_map = load_map(path, "mmlu", "permuted", spec)       # validated TwinMap
    twin_map.pairs                                            # DataFrame twin_task, twin_doc, public_task, public_doc
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd

    from harness.suite_schema import TwinSpec

REBUILD = "rebuild it with `python scripts/build_twin_maps.py` or fix the suite's twins entry"


@dataclass(frozen=True)
class TwinMap:
    suite: str
    kind: str
    relation: str
    public_sizes: dict[str, int]
    twin_sizes: dict[str, int]
    pairs: pd.DataFrame  # twin_task, twin_doc, public_task, public_doc (mapped items only)


def _bad(suite: str, kind: str, what: str) -> HarnessError:
    return HarnessError(f"twin map {suite}:{kind}: {what}", REBUILD)


def load_map(path: Path, suite: str, kind: str, spec: TwinSpec) -> TwinMap:
    """Read and validate a map file (cached per version of the file)."""
    if not path.is_file():
        raise _bad(suite, kind, f"map file {path} is missing")
    return _load(path, path.stat().st_mtime_ns, suite, kind, spec.relation, tuple(spec.tasks))


@functools.lru_cache(maxsize=64)
def _load(path: Path, _mtime: int, suite: str, kind: str, relation: str, only: tuple[str, ...]) -> TwinMap:
    import pandas as pd

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise _bad(suite, kind, f"{path} is not valid JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
        raise _bad(suite, kind, f"{path} has no 'tasks' mapping")
    if raw.get("relation") != relation:
        raise _bad(suite, kind, f"the map says relation {raw.get('relation')!r}, suite.yaml says {relation!r}")
    public_sizes = {str(k): int(v) for k, v in (raw.get("public_sizes") or {}).items()}
    rows, twin_sizes = _rows(raw["tasks"], public_sizes, suite, kind)
    if only:
        unknown = sorted(set(only) - set(twin_sizes))
        if unknown:
            raise _bad(suite, kind, f"twin task {unknown[0]} is not in the map")
        rows = [r for r in rows if r[0] in only]
        twin_sizes = {t: n for t, n in twin_sizes.items() if t in only}
    if relation == "aligned":
        _check_bijection(rows, public_sizes, suite, kind)
    pairs = pd.DataFrame(rows, columns=["twin_task", "twin_doc", "public_task", "public_doc"])
    return TwinMap(suite, kind, relation, public_sizes, twin_sizes, pairs)


def _rows(tasks: dict[str, Any], public_sizes: dict[str, int], suite: str, kind: str,
          ) -> tuple[list[tuple[str, int, str, int]], dict[str, int]]:
    rows, twin_sizes = [], {}
    for twin_task, entry in tasks.items():
        public_task, seeds = entry.get("public_task"), entry.get("seeds")
        if public_task not in public_sizes or not isinstance(seeds, list):
            raise _bad(suite, kind, f"twin task {twin_task} names public task {public_task!r}, "
                                    "which the map's public_sizes does not list")
        twin_sizes[twin_task] = len(seeds)
        for doc, seed in enumerate(seeds):
            if seed is None:
                continue
            if not isinstance(seed, int) or not 0 <= seed < public_sizes[public_task]:
                raise _bad(suite, kind, f"twin item {twin_task}/{doc} names public item {public_task}/{seed}, "
                                        f"which does not exist ({public_sizes[public_task]} items)")
            rows.append((twin_task, doc, public_task, seed))
    return rows, twin_sizes


def _check_bijection(rows: list[tuple[str, int, str, int]], public_sizes: dict[str, int], suite: str,
                     kind: str) -> None:
    seen: dict[tuple[str, int], tuple[str, int]] = {}
    for twin_task, doc, public_task, seed in rows:
        if (public_task, seed) in seen:
            other = seen[(public_task, seed)]
            raise _bad(suite, kind, f"public item {public_task}/{seed} is the seed of both {other[0]}/{other[1]} "
                                    f"and {twin_task}/{doc} (an aligned map is one to one)")
        seen[(public_task, seed)] = (twin_task, doc)
    for task, n in sorted(public_sizes.items()):
        missing = [i for i in range(n) if (task, i) not in seen]
        if missing:
            raise _bad(suite, kind, f"public item {task}/{missing[0]} has no twin (an aligned map covers them all)")
