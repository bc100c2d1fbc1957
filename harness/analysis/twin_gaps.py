"""The gap between each public score and its twins: paired through the twin's map, else unpaired.

    gaps = twin_gaps(store, data)    # one row per (model, suite, twin kind): evidence.GAP_COLUMNS
    some = twin_gaps(store, data, models=["3f2a..."])  # those models' rows of it

An independent twin (different items) is compared unpaired: public - twin, stderr sqrt(se_p^2 + se_t^2). An aligned
or derived twin pairs each twin item with its public seed through the map (harness/twinmaps.py,
harness/store/twin_pairs.py): the gap is the mean of public - twin over the mapped items the two runs share, with a
stderr clustered by seed. When fewer than MIN_PAIRED_DOCS items (or MIN_PAIRED_SEEDS seeds) pair, for example two
runs limited to different first items, the gap falls back to unpaired over the map's twin tasks, unless the map
covers only some of the public tasks (bbh's permuted twin: its multiple-choice tasks; mgsm's cross-lingual twin:
English): then there is no gap rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from harness.analysis.evidence import GAP_COLUMNS, MIN_PAIRED_DOCS, MIN_PAIRED_SEEDS, Data
from harness.errors import HarnessError
from harness.store.twin_pairs import mapped_diffs, max_docs
from harness.suites import score_rules
from harness.twinmaps import TwinMap, load_map

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from harness.store import Store
    from harness.suite_schema import TwinSpec


def empty_gaps() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=GAP_COLUMNS)


def twin_map(data: Data, suite: str, kind: str, spec: TwinSpec) -> TwinMap:
    """The validated map of a mapped twin (relative paths are inside the public suite's folder)."""
    assert spec.map is not None
    path = Path(spec.map)
    if not path.is_absolute():
        folder = (data.suite_dirs or {}).get(suite)
        if folder is None:
            raise HarnessError(f"twin map {suite}:{kind}: suite {suite!r} has no folder to find {spec.map} in",
                               "give the map as an absolute path or add the suite under suites/")
        path = folder / path
    return load_map(path, suite, kind, spec)


def _unpaired(data: Data) -> pd.DataFrame:
    """Every (model, suite, twin kind) with both scores, unpaired, with the run ids to pair later, sorted by suite,
    twin kind and model_id (suite_scores' order of models): per twin, the public scores (in the frame's order) that
    have a twin score of the same model, found by position (the inner join on model_id that a merge would make,
    without a frame per suite and split)."""
    import numpy as np
    import pandas as pd

    sc = data.scores
    at = _positions(sc)
    codes = pd.factorize(sc["model_id"])[0]
    pub, twin, labels = [], [], []
    for suite, kinds in sorted(data.twins.items()):
        p_pos = at.get((suite, data.default_split(suite)))
        for kind, spec in sorted(kinds.items()):
            t_suite, _, t_split = spec.ref.partition(":")
            t_split = t_split or data.default_split(t_suite)
            t_pos = at.get((t_suite, t_split))
            if p_pos is None or t_pos is None:
                continue
            a, b = _join(codes, p_pos, t_pos, sc)
            if len(a):
                pub.append(a)
                twin.append(b)
                labels.append((len(a), suite, kind, f"{t_suite}:{t_split}", spec.relation))
    if not pub:
        return empty_gaps()
    a, b = np.concatenate(pub), np.concatenate(twin)

    def label(j: int) -> pd.Series:
        return pd.Series(np.repeat(np.array([x[j] for x in labels], dtype=object), [x[0] for x in labels]),
                         dtype="str")

    def take(col: str, pos: np.ndarray) -> pd.Series:
        return pd.Series(sc[col].array.take(pos))

    g = pd.DataFrame({"model_id": take("model_id", a), "suite": label(1), "kind": label(2), "twin": label(3),
                      "relation": label(4), "public": take("value", a), "twin_value": take("value", b),
                      "se_public": take("se", a), "se_twin": take("se", b), "run_a": take("run_id", a),
                      "run_b": take("run_id", b), "n_public": take("n", a), "n_twin": take("n", b)})
    g["gap"] = g["public"] - g["twin_value"]
    g["se"] = np.sqrt(g["se_public"] ** 2 + g["se_twin"] ** 2)
    g["n"] = np.minimum(g["n_public"], g["n_twin"]).fillna(0).astype(int)
    g["paired"] = False
    return g


def _positions(sc: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(suite, split) -> the positions of its scores in the frame, ascending."""
    import numpy as np
    import pandas as pd

    suite, suites = pd.factorize(sc["suite"])  # each column on its own: no tuple per row
    split, splits = pd.factorize(sc["split"])
    codes = np.where((suite >= 0) & (split >= 0), suite * len(splits) + split, -1)  # -1: a missing suite or split
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else ordered
    bounds = np.r_[starts, len(ordered)]
    return {(suites[c // len(splits)], splits[c % len(splits)]): order[bounds[i]:bounds[i + 1]]
            for i, c in enumerate(ordered[starts].tolist()) if c >= 0}


def _join(codes: np.ndarray, p_pos: np.ndarray, t_pos: np.ndarray, sc: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Positions (public, twin) of the models scored on both, in the public scores' order: the inner join on
    model_id (`codes`: the frame's model ids as integers) when each model is scored once on each side, as
    suite_scores gives them; else the merge itself."""
    import numpy as np

    pc, tc = codes[p_pos], codes[t_pos]
    if np.unique(pc).size != pc.size or np.unique(tc).size != tc.size:
        m = sc.iloc[p_pos][["model_id"]].assign(a=p_pos).merge(sc.iloc[t_pos][["model_id"]].assign(b=t_pos),
                                                               on="model_id")
        return m["a"].to_numpy(dtype=np.int64), m["b"].to_numpy(dtype=np.int64)
    twin_at = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    twin_at[tc] = t_pos
    b = twin_at[pc]
    return p_pos[b >= 0], b[b >= 0]


def twin_gaps(store: Store, data: Data, models: Collection[str] | None = None) -> pd.DataFrame:
    """The gaps of every model, or of `models` only (the dashboard's Lineage page: the models on one model's chains):
    the same rows, each computed from its own two runs, without reading every model's documents."""
    g = _unpaired(data)
    if models is not None:
        wanted = set(models)
        g = g[[m in wanted for m in g["model_id"].tolist()]]  # in a set: Series.isin hashes Arrow strings slowly
    if g.empty:
        return empty_gaps()
    mapped = g[g["relation"] != "independent"]
    if mapped.empty:
        return g[GAP_COLUMNS]
    with store.reading():  # one connection for the two reads
        return _paired(store, data, g, mapped)


def _paired(store: Store, data: Data, g: pd.DataFrame, mapped: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    maps, tasks, keys, fits, wholes = [], [], {}, [], []
    tops = max_docs(store, sorted(set(mapped["run_a"].tolist()) | set(mapped["run_b"].tolist())))
    tops = tops.astype({"run_id": object, "task": object})  # looked up by value below: hashing, not Arrow scans
    for suite, kind in mapped[["suite", "kind"]].drop_duplicates().itertuples(index=False):
        tm = twin_map(data, suite, kind, data.twins[suite][kind])
        keys[(suite, kind)] = key = f"{suite}|{kind}"
        maps.append(tm.pairs.assign(map_key=key))
        tasks.append(pd.DataFrame({"map_key": key, "twin_task": sorted(tm.twin_sizes)}))
        rows = mapped[(mapped["suite"] == suite) & (mapped["kind"] == kind)]
        fits.append(_runs_fit(tm, rows, tops))
        wholes.append(_covers_public(tm, rows, tops))
    pairs = pd.DataFrame({"pid": mapped.index.to_numpy(), "run_a": mapped["run_a"].to_numpy(),
                          "run_b": mapped["run_b"].to_numpy(),
                          "map_key": [keys[(s, k)] for s, k in zip(mapped["suite"].tolist(), mapped["kind"].tolist(),
                                                                   strict=True)]})
    st = mapped_diffs(store, pairs, pd.concat(maps, ignore_index=True), pd.concat(tasks, ignore_index=True),
                      score_rules()).set_index("pid")  # each run on the metric its suite score reads
    idx = st.index
    fit = pd.concat(fits).reindex(idx).fillna(False).astype(bool)
    ok = (st["n"] >= MIN_PAIRED_DOCS) & (st["clusters"] >= MIN_PAIRED_SEEDS) & fit
    p = idx[ok.to_numpy()]
    g.loc[p, "paired"] = True
    g.loc[p, "gap"] = st.loc[p, "diff"].to_numpy()
    g.loc[p, "se"] = st.loc[p, "se"].to_numpy()
    g.loc[p, "n"] = st.loc[p, "n"].astype(int).to_numpy()
    g.loc[p, "public"] = st.loc[p, "mean_a"].to_numpy()
    g.loc[p, "twin_value"] = st.loc[p, "mean_b"].to_numpy()
    # Unpaired over the map's twin tasks (a twin restricted to one perturbation type is not the whole split), only
    # where the map's public tasks are all the public run scored: the suite score of bbh (27 tasks) against its 17
    # permuted multiple-choice tasks, or of mgsm (11 languages) against 10 of them, would not be public - twin.
    whole = pd.concat(wholes).reindex(idx).fillna(False).astype(bool)
    u = idx[(~ok & whole & (st["n_b_all"] > 0)).to_numpy()]
    g.loc[u, "twin_value"] = st.loc[u, "mean_b_all"].to_numpy()
    g.loc[u, "gap"] = g.loc[u, "public"] - g.loc[u, "twin_value"]
    se_b = st.loc[u, "se_b_all"].fillna(g.loc[u, "se_twin"]).to_numpy()
    g.loc[u, "se"] = np.sqrt(g.loc[u, "se_public"].to_numpy() ** 2 + se_b ** 2)
    g.loc[u, "n"] = np.minimum(g.loc[u, "n_public"], st.loc[u, "n_b_all"]).astype(int).to_numpy()
    gone = idx[(~ok & (~whole | (st["n_b_all"] == 0))).to_numpy()]  # or none of the map's twin tasks were run
    return g.drop(index=gone)[GAP_COLUMNS].reset_index(drop=True)


def _runs_fit(tm: TwinMap, rows: pd.DataFrame, tops: pd.DataFrame) -> pd.Series:
    """Per gap row: whether both runs scored only items the map knows. A run that scored a document beyond the map
    ran on other data than the map was built from (another version of the suite, or another store's suite of the
    same name): its gap is not paired (it falls back to unpaired) rather than paired wrongly."""
    import pandas as pd

    def beyond(sizes: dict[str, int]) -> pd.Series:  # the runs with a document at or past a task's size
        n = tops["task"].map(sizes)
        return tops.loc[n.notna() & (tops["top"] >= n), "run_id"]

    fit = (~rows["run_a"].astype(object).isin(beyond(tm.public_sizes))
           & ~rows["run_b"].astype(object).isin(beyond(tm.twin_sizes)))
    return pd.Series(fit.to_numpy(dtype=bool), index=rows.index, dtype=bool)


def _covers_public(tm: TwinMap, rows: pd.DataFrame, tops: pd.DataFrame) -> pd.Series:
    """Per gap row: whether every task the public run scored is one of the map's public tasks (else the public suite
    score is not the score of the mapped tasks, and only a paired gap compares like with like)."""
    import pandas as pd

    other = tops.loc[~tops["task"].isin(list(tm.public_sizes)), "run_id"]
    return pd.Series(~rows["run_a"].astype(object).isin(other).to_numpy(dtype=bool), index=rows.index, dtype=bool)
