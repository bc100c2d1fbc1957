"""Paired public - twin differences through a twin map (harness/twinmaps.py): the one query that pairs twin items.

    stats = mapped_diffs(store, pairs, maps, tasks)  # pairs: pid, run_a (public run), run_b (twin run), map_key
                                                     # maps: map_key, twin_task, twin_doc, public_task, public_doc
                                                     # tasks: map_key, twin_task (the map's twin tasks)

Documents are matched only through the map: twin item (twin_task, twin_doc) of run_b against its public seed
(public_task, public_doc) of run_a; a doc_id that happens to be equal on both sides means nothing. Each public
seed is a cluster (gsm_plus makes 7 perturbations of one seed), so the stderr is cluster-robust over seeds.

The per-document scores come from the store's per-document index (harness/store/doc_index.py), each task's on the
metric its suite score reads (the suites' rules: gsm8k's strict-match, not the flexible-extract rows logged beside
it), never from the per-sample rows: one read of the documents the maps name, laid out densely per (run, task) so
that every mapped item is found by position, then sums per seed and per pair in numpy (docs/dashboard.md has the
figures). The sums follow the documents' places in that layout, never the order DuckDB returns them in, so every
figure is the same bits on every read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd

    from harness.store import Store
    from harness.store.records import ScoreRule

COLUMNS = ["pid", "n", "clusters", "diff", "se", "mean_a", "mean_b", "n_b_all", "mean_b_all", "se_b_all"]
CHUNK_ROWS = 2_000_000  # twin document slots held at once, whatever the number of pairs


def _read(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, sql: str, numpy: bool = False,
          args: list[object] | None = None) -> Any:
    """One query over `frame` registered as `name`: a DataFrame, or numpy arrays by column."""
    con.register(name, frame)
    try:
        result = con.execute(sql, args or [])
        return result.fetchnumpy() if numpy else result.df()
    finally:
        con.unregister(name)


class MapIndex:
    """Every map row (r) of every map, found from its twin side by position: per (map, twin task) `tk` a dense
    array over the twin docs the map names; per (map, public task) `pk`; per (map, public task, public doc) a seed."""

    def __init__(self, maps: pd.DataFrame) -> None:
        import numpy as np
        import pandas as pd

        self.tk, twin_keys = pd.factorize(pd.MultiIndex.from_arrays([maps["map_key"], maps["twin_task"]]))
        self.pk, public_keys = pd.factorize(pd.MultiIndex.from_arrays([maps["map_key"], maps["public_task"]]))
        self.seed, seeds = pd.factorize(pd.MultiIndex.from_arrays(
            [maps["map_key"], maps["public_task"], maps["public_doc"]]))
        self.n_pk, self.n_seeds = len(public_keys), len(seeds)
        self.public_doc = maps["public_doc"].to_numpy(dtype=np.int64)
        twin_doc = maps["twin_doc"].to_numpy(dtype=np.int64)
        self.twin = _ranges(twin_keys, self.tk, twin_doc)
        self.public = _ranges(public_keys, self.pk, self.public_doc)
        self.start = np.concatenate([[0], np.cumsum(self.twin["hi"] - self.twin["lo"] + 1)]).astype(np.int64)
        self.row_of = np.full(int(self.start[-1]), -1, dtype=np.int64)
        self.row_of[self.start[self.tk] + twin_doc - self.twin["lo"].to_numpy()[self.tk]] = np.arange(len(maps))


def _ranges(keys: pd.MultiIndex, code: np.ndarray, doc: np.ndarray) -> pd.DataFrame:
    """Per key (map_key, task): its position, and the lowest and highest doc the map names in it."""
    import numpy as np
    import pandas as pd

    lo = pd.Series(doc).groupby(code).min().to_numpy(dtype=np.int64)
    hi = pd.Series(doc).groupby(code).max().to_numpy(dtype=np.int64)
    return pd.DataFrame({"map_key": keys.get_level_values(0), "task": keys.get_level_values(1),
                         "key": np.arange(len(keys)), "lo": lo, "hi": hi})


def _blocks(pairs: pd.DataFrame, side: str, ranges: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Per pair and task of its map on one side ('a' public, 'b' twin): the run's (run, task) key rt, the map's
    doc range cut to the run's, and the run's number of scored documents there (pairs: i, a, b, map_key)."""
    import numpy as np

    out = pairs[["i", side, "map_key"]].merge(ranges, on="map_key").merge(
        keys[["rt", "run", "task", "low_doc", "top_doc", "docs"]], left_on=[side, "task"], right_on=["run", "task"])
    out["lo"] = np.maximum(out["lo"], out["low_doc"])
    out["hi"] = np.minimum(out["hi"], out["top_doc"])
    return out[out["lo"] <= out["hi"]].reset_index(drop=True)


class PublicScores:
    """The public runs' scores of the documents their pairs' maps name: one dense block per (pair, public task)."""

    def __init__(self, blocks: pd.DataFrame, n_pk: int) -> None:
        import numpy as np

        self.blocks = blocks.assign(q=blocks["i"].to_numpy(dtype=np.int64) * n_pk + blocks["key"]).sort_values("q")
        self.q, self.lo, self.hi = (self.blocks[c].to_numpy(dtype=np.int64) for c in ("q", "lo", "hi"))
        self.n_pk, self.n_pairs = n_pk, int(self.blocks["i"].max()) + 1 if len(self.blocks) else 0
        self.block = np.full(self.n_pairs * n_pk, -1, dtype=np.int64)  # (pair, public key) -> its block, or -1
        self.block[self.q] = np.arange(len(self.q))

    def fill(self, start: np.ndarray, score: np.ndarray, present: np.ndarray) -> None:
        """The scores of `blocks` as _dense laid them out."""
        import numpy as np

        self.base, self.score = start[:-1] - self.lo, score
        self.present = present if np.isnan(score[present]).any() else None  # a stored NaN is a score

    def get(self, i: np.ndarray, pk: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The public score of each (pair i, public key pk, doc), and whether the pair's public run has one."""
        import numpy as np

        q = i * self.n_pk + pk
        if not len(self.q):
            return np.full(len(q), np.nan), np.zeros(len(q), dtype=bool)
        j = np.where(i < self.n_pairs, self.block[np.minimum(q, len(self.block) - 1)], -1)
        inside = (j >= 0) & (doc >= self.lo[j]) & (doc <= self.hi[j])
        slot = np.where(inside, self.base[j] + doc, 0)
        value = self.score[slot]
        ok = inside & (~np.isnan(value) if self.present is None else self.present[slot])
        return value, ok


def _dense(con: duckdb.DuckDBPyConnection, parts: list[pd.DataFrame],
           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The scores of each block's (rt, lo, hi) documents laid out densely, block after block: document `doc` of
    block j at slot start[j] + doc - lo[j]; per list of blocks in `parts` (read in one scan of the index): start
    (one more than its blocks), scores, and which slots hold one. Placed by slot, not in the order DuckDB returns
    the rows (which varies between reads of a large store), so what is summed over them is summed in the same order
    every time."""
    import numpy as np
    import pandas as pd

    blocks = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    lo = blocks["lo"].to_numpy(dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(blocks["hi"].to_numpy(dtype=np.int64) - lo + 1)]).astype(np.int64)
    docs = _read(con, "blocks_in", blocks[["rt", "lo", "hi"]].assign(base=start[:-1] - lo), """
        SELECT b.base + d.doc_id AS slot, d.score FROM doc_scores d JOIN blocks_in b USING (rt)
        WHERE d.doc_id BETWEEN b.lo AND b.hi""", numpy=True)
    score = np.full(int(start[-1]), np.nan)
    score[docs["slot"]] = docs["score"]
    present = np.zeros(len(score), dtype=bool)
    present[docs["slot"]] = True
    out, first = [], 0
    for part in parts:
        own = start[first:first + len(part) + 1]
        out.append((own - own[0], score[own[0]:own[-1]], present[own[0]:own[-1]]))
        first += len(part)
    return out


def _chunks(twin: pd.DataFrame) -> list[pd.DataFrame]:
    """The twin blocks (i, rt, key, lo, hi) in chunks of about CHUNK_ROWS document slots, each pair's blocks in one
    chunk: a seed's items may lie in several twin tasks (gsm_plus: eight), and its sums must be made whole before
    they are squared (the clustered stderr) and counted (its clusters)."""
    import numpy as np

    twin = twin.sort_values("i", kind="stable", ignore_index=True)  # a pair's blocks together (_blocks keeps them so)
    chunk = np.cumsum((twin["hi"] - twin["lo"] + 1).to_numpy()) // CHUNK_ROWS
    i = twin["i"].to_numpy()
    first = np.r_[True, i[1:] != i[:-1]] if len(i) else np.zeros(0, dtype=bool)
    chunk = np.maximum.accumulate(np.where(first, chunk, 0))  # each pair in its first block's chunk
    return [part for _, part in twin.groupby(chunk)]


def _pair_stats(con: duckdb.DuckDBPyConnection, maps: MapIndex, public: PublicScores, chunks: list[pd.DataFrame],
                read: list[tuple], n_pairs: int) -> dict[str, np.ndarray]:
    """Per pair (by position i): the sums over its seeds: n, clusters, s, sa, sb, ss parts, from the twin blocks,
    a chunk at a time (`read`: the first chunks' documents, already read)."""
    import numpy as np

    aligned = maps.n_seeds == len(maps.seed)  # one twin item per seed (an aligned map): each item is its seed
    parts = []
    for j, part in enumerate(chunks):
        start, score, present = read[j] if j < len(read) else _dense(con, [part])[0]
        i, b, r = _twin_items(maps, part, start, score, present)
        a, ok = public.get(i, maps.pk[r], maps.public_doc[r])
        if not ok.all():
            i, a, b, r = i[ok], a[ok], b[ok], r[ok]
        if aligned:
            parts.append((i, None, a - b, a, b))
        else:
            key, k, s, sa, sb = _seed_sums(i * maps.n_seeds + maps.seed[r], a, b)
            parts.append((key // maps.n_seeds, k, s, sa, sb))
    if not parts:
        parts.append((np.zeros(0, dtype=np.int64), None, np.zeros(0), np.zeros(0), np.zeros(0)))
    parts = [x for x in parts if len(x[0])] or parts[:1]  # one chunk (most stores): its arrays, not copies
    i, s, sa, sb = (parts[0][j] if len(parts) == 1 else np.concatenate([x[j] for x in parts]) for j in (0, 2, 3, 4))
    clusters = np.bincount(i, minlength=n_pairs)
    if aligned:  # k = 1 for every seed: the same figures as with its ones, without them
        n = clusters.astype(float)
    else:
        k = parts[0][1] if len(parts) == 1 else np.concatenate([x[1] for x in parts])
        n = np.bincount(i, weights=k, minlength=n_pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.bincount(i, weights=s, minlength=n_pairs) / n
        dev = s - diff[i] if aligned else s - diff[i] * k
        return {"n": n.astype(np.int64), "clusters": clusters, "diff": diff,
                "ss": np.bincount(i, weights=dev * dev, minlength=n_pairs),
                "mean_a": np.bincount(i, weights=sa, minlength=n_pairs) / n,
                "mean_b": np.bincount(i, weights=sb, minlength=n_pairs) / n}


def _twin_items(maps: MapIndex, part: pd.DataFrame, start: np.ndarray, score: np.ndarray, present: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each scored and mapped twin item of a chunk, block after block, each in doc order (the same order every
    read): its pair i, its score, its map row. Slot t of block j holds doc lo[j] + t - start[j], whose map row is
    at map position start_m[key] + doc - lo_m[key]: one shift per block."""
    import numpy as np

    counts = np.diff(start)
    key = part["key"].to_numpy(dtype=np.int64)
    shift = maps.start[key] - maps.twin["lo"].to_numpy()[key] + part["lo"].to_numpy(dtype=np.int64) - start[:-1]
    pair = np.repeat(part["i"].to_numpy(dtype=np.int64), counts)
    if present.all():
        i, b, r = pair, score, maps.row_of[np.arange(len(score)) + np.repeat(shift, counts)]
    else:
        slot = np.flatnonzero(present)
        i, b, r = pair[slot], score[slot], maps.row_of[slot + np.repeat(shift, counts)[slot]]
    mapped = r >= 0
    return (i, b, r) if mapped.all() else (i[mapped], b[mapped], r[mapped])


def _seed_sums(key: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per seed key (pair i * seeds + seed): its items k, sum(a - b), sum(a), sum(b)."""
    import numpy as np

    order = np.argsort(key, kind="stable")
    key, a, b = key[order], a[order], b[order]
    if not len(key):
        return key, *(np.zeros(0) for _ in range(4))
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return (key[starts], np.diff(np.r_[starts, len(key)]).astype(float), np.add.reduceat(a - b, starts),
            np.add.reduceat(a, starts), np.add.reduceat(b, starts))


def _twin_all(keys: pd.DataFrame, pairs: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per pair: the twin run's documents over the map's twin tasks: n_b_all, mean_b_all, var_b_all (the tasks'
    stored counts, sums and variances combined; one task's are its own)."""
    import numpy as np

    t = pairs[["pid", "b", "map_key"]].merge(tasks[["map_key", "twin_task"]], on="map_key").merge(
        keys[["run", "task", "docs", "total", "var"]], left_on=["b", "twin_task"], right_on=["run", "task"])
    t = t[t["docs"] > 0]
    g = t.groupby("pid")
    n, total = g["docs"].sum(), g["total"].sum()
    mean = total / n
    m2 = ((t["docs"] - 1) * t["var"].fillna(0) + t["docs"] * (t["total"] / t["docs"] - t["pid"].map(mean)) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        combined = m2.groupby(t["pid"]).sum() / (n - 1)
    var = combined.where(g.size() > 1, g["var"].first()).where(n > 1)
    out = pairs[["pid"]].set_index("pid")
    return out.assign(n_b_all=n.reindex(out.index).fillna(0).astype(np.int64), mean_b_all=mean, var_b_all=var)


def mapped_diffs(store: Store, pairs: pd.DataFrame, maps: pd.DataFrame, tasks: pd.DataFrame,
                 rules: dict[str, ScoreRule] | None = None) -> pd.DataFrame:
    """Per pair: mapped items n, seeds (clusters), mean(public - twin) with its cluster-robust stderr, both means
    over the mapped items, and the twin run's mean over all documents of the map's twin tasks (`tasks`: map_key,
    twin_task) for an unpaired comparison when few items pair. Each run's tasks are read on the metric its suite
    score reads under `rules` (harness.suites.score_rules(); None: each task's primary metric)."""
    import numpy as np
    import pandas as pd

    from harness.store.doc_index import chosen_sql
    from harness.store.frames import rule_lists

    if pairs.empty:
        return pd.DataFrame(columns=COLUMNS)
    pairs = pairs.sort_values("pid", ignore_index=True)
    runs = pd.Index(pd.unique(pd.concat([pairs["run_a"], pairs["run_b"]]).to_numpy(dtype=object)))
    pairs = pd.DataFrame({"i": np.arange(len(pairs)), "pid": pairs["pid"].to_numpy(),
                          "a": runs.get_indexer(pairs["run_a"]), "b": runs.get_indexer(pairs["run_b"]),
                          "map_key": pairs["map_key"].to_numpy()})
    index = MapIndex(maps.reset_index(drop=True))
    with store.db.read() as con:
        keys = _read(con, "runs_in", pd.DataFrame({"run_id": runs, "run": np.arange(len(runs))}), f"""
            SELECT t.rt, r.run, t.task, t.low_doc, t.top_doc, t.docs, t.total, t.var
            FROM ({chosen_sql("runs_in")}) t JOIN runs_in r USING (run_id)""", args=rule_lists(rules)[:3])
        public = PublicScores(_blocks(pairs, "a", index.public, keys), index.n_pk)
        chunks = _chunks(_blocks(pairs, "b", index.twin, keys))
        read = _dense(con, [public.blocks, *chunks[:1]])  # the public documents and the first chunk: one scan
        public.fill(*read[0])
        stats = _pair_stats(con, index, public, chunks, read[1:], len(pairs))
    out = pd.DataFrame({"pid": pairs["pid"], **stats}).join(_twin_all(keys, pairs, tasks), on="pid")
    c, n = out["clusters"].to_numpy(dtype=float), out["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["se"] = np.where(c > 1, np.sqrt(c / (c - 1) * out["ss"].fillna(0).to_numpy()) / n, np.nan)
        nb = out["n_b_all"].to_numpy(dtype=float)
        out["se_b_all"] = np.where(nb > 1, np.sqrt(out["var_b_all"].fillna(0).to_numpy() / nb), np.nan)
    return out[COLUMNS]


def max_docs(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """The highest doc_id of each (run, task): a map must know every document a run scored."""
    import pandas as pd

    with store.db.read() as con:
        return _read(con, "runs_in", pd.DataFrame({"run_id": list(run_ids)}, dtype=object),
                     "SELECT run_id, task, max(top_doc) AS top FROM run_tasks JOIN runs_in USING (run_id) "
                     "GROUP BY run_id, task")  # every row of a task has its top
