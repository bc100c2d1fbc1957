"""Paired public - twin differences through a twin map (harness/twinmaps.py): the one query that pairs twin items.

    stats = mapped_diffs(store, pairs, maps)   # pairs: pid, run_a (public run), run_b (twin run), map_key
                                               # maps: map_key, twin_task, twin_doc, public_task, public_doc

Documents are matched only through the map: twin item (twin_task, twin_doc) of run_b against its public seed
(public_task, public_doc) of run_a; a doc_id that happens to be equal on both sides means nothing. Each public
seed is a cluster (gsm_plus makes 7 perturbations of one seed), so the stderr is cluster-robust over seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.store import Store

COLUMNS = ["pid", "n", "clusters", "diff", "se", "mean_a", "mean_b", "n_b_all", "mean_b_all", "se_b_all"]


def _primary_sql(runs: str) -> str:
    from harness.store.frames import _METRIC_RANK  # moves to harness/store/views.py (issue 14)

    return f"""
        SELECT s.run_id, s.task, s.doc_id, avg(s.score) AS score
        FROM samples s JOIN (  -- the primary metric of each (run, task), as the suite score picks it
            SELECT run_id, task, arg_min(metric, ({_METRIC_RANK.replace('s.', '')}, metric)) AS metric
            FROM (SELECT DISTINCT run_id, task, metric FROM samples
                  WHERE run_id IN ({runs}) AND score IS NOT NULL) GROUP BY run_id, task
        ) m USING (run_id, task, metric)
        WHERE s.score IS NOT NULL GROUP BY ALL"""


def mapped_diffs(store: Store, pairs: pd.DataFrame, maps: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per pair: mapped items n, seeds (clusters), mean(public - twin) with its cluster-robust stderr, both means
    over the mapped items, and the twin run's mean over all documents of the map's twin tasks (`tasks`: map_key,
    twin_task) for an unpaired comparison when few items pair."""
    import numpy as np
    import pandas as pd

    if pairs.empty:
        return pd.DataFrame(columns=COLUMNS)
    runs = "SELECT run_a FROM pairs_in UNION SELECT run_b FROM pairs_in"
    with store.db.read() as con:
        con.register("pairs_in", pairs[["pid", "run_a", "run_b", "map_key"]])
        con.register("maps_in", maps[["map_key", "twin_task", "twin_doc", "public_task", "public_doc"]])
        con.register("tasks_in", tasks[["map_key", "twin_task"]])
        try:
            out = con.execute(f"""
                WITH prim AS MATERIALIZED ({_primary_sql(runs)}),
                twin_side AS MATERIALIZED (  -- the twin runs' items first: joining the map to every pair is larger
                    SELECT p.pid, p.run_a, p.map_key, b.task, b.doc_id, b.score
                    FROM pairs_in p JOIN prim b ON b.run_id = p.run_b
                ),
                tw AS (
                    SELECT t.pid, t.run_a, m.public_task, m.public_doc, t.score AS sb
                    FROM twin_side t JOIN maps_in m
                      ON m.map_key = t.map_key AND m.twin_task = t.task AND m.twin_doc = t.doc_id
                ),
                c AS (
                    SELECT tw.pid, tw.public_task, tw.public_doc, sum(a.score - tw.sb) AS s, count(*) AS k,
                           sum(a.score) AS sa, sum(tw.sb) AS sb
                    FROM tw JOIN prim a ON a.run_id = tw.run_a AND a.task = tw.public_task
                                        AND a.doc_id = tw.public_doc
                    GROUP BY ALL
                ),
                tot AS (
                    SELECT pid, sum(k) AS n, count(*) AS clusters, sum(s) / sum(k) AS diff,
                           sum(sa) / sum(k) AS mean_a, sum(sb) / sum(k) AS mean_b FROM c GROUP BY pid
                ),
                robust AS (
                    SELECT tot.pid, any_value(tot.n) AS n, any_value(tot.clusters) AS clusters,
                           any_value(tot.diff) AS diff, any_value(tot.mean_a) AS mean_a,
                           any_value(tot.mean_b) AS mean_b, sum(power(c.s - tot.diff * c.k, 2)) AS ss
                    FROM tot JOIN c USING (pid) GROUP BY tot.pid
                ),
                twin_all AS (
                    SELECT s.pid, count(*) AS n_b_all, avg(s.score) AS mean_b_all, var_samp(s.score) AS var_b_all
                    FROM twin_side s JOIN tasks_in t ON t.map_key = s.map_key AND t.twin_task = s.task
                    GROUP BY s.pid
                )
                SELECT p.pid, coalesce(r.n, 0) AS n, coalesce(r.clusters, 0) AS clusters, r.diff, r.ss,
                       r.mean_a, r.mean_b, coalesce(t.n_b_all, 0) AS n_b_all, t.mean_b_all, t.var_b_all
                FROM pairs_in p LEFT JOIN robust r USING (pid) LEFT JOIN twin_all t USING (pid)
                ORDER BY p.pid""").df()
        finally:
            for name in ("pairs_in", "maps_in", "tasks_in"):
                con.unregister(name)
    c = out["clusters"].to_numpy(dtype=float)
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["se"] = np.where(c > 1, np.sqrt(c / (c - 1) * out["ss"].fillna(0).to_numpy()) / n, np.nan)
        nb = out["n_b_all"].to_numpy(dtype=float)
        out["se_b_all"] = np.where(nb > 1, np.sqrt(out["var_b_all"].fillna(0).to_numpy() / nb), np.nan)
    return out[COLUMNS]


def max_docs(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """The highest doc_id of each (run, task): a map must know every document a run scored."""
    with store.db.read() as con:
        return con.execute("SELECT run_id, task, max(doc_id) AS top FROM samples WHERE list_contains(?, run_id) "
                           "GROUP BY ALL", [list(run_ids)]).df()
