"""What the overfitting analysis reads, gathered once: models, lineage, suite scores, exposure, and the gap between
each public score and its twins (paired over shared document ids where the twin shares them).

    data = gather(store, twins={"zoo_math": {"heldout": "zoo_math:heldout"}})

`twins` maps a suite to {kind: "suite:split"} as in suite.yaml; None reads them from harness.suites, then adds
what the store itself shows: any run on a split named heldout / twin / perturbed of a suite is a twin of that suite's
default split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.analysis.lineage import Graph
from harness.store import frames as views

if TYPE_CHECKING:
    import pandas as pd

    from harness.store import Store

TWIN_SPLIT_NAMES = ("heldout", "twin", "perturbed")
MIN_PAIRED_DOCS = 20
PAIR_MARGIN = 0.025  # half the smallest flag size (gap_min, divergence_min)


@dataclass
class Data:
    models: pd.DataFrame            # model_id, name, kind, method, ..., depth
    graph: Graph
    scores: pd.DataFrame            # views.suite_scores
    twins: dict[str, dict[str, str]]
    default_splits: dict[str, str]
    exposure: dict[str, frozenset]  # model_id -> {(suite, split|None, process, selected model_id)}
    gaps: pd.DataFrame              # model_id, suite, kind, twin, public, twin_value, gap, se, paired, n
    names: dict[str, str]
    rows_cache: dict | None = None  # overfit._gap_rows
    evolve: pd.DataFrame | None = None  # views.evolve_candidates

    def default_split(self, suite: str) -> str:
        return self.default_splits.get(suite, "public")

    def in_sample(self, model_id: str, suite: str, split: str | None = None) -> bool:
        """Whether this model or an ancestor was selected on this suite and split (None: the default split)."""
        split = split or self.default_split(suite)
        for s, sp, _proc, _who in self.exposure.get(model_id, ()):
            if s == suite and (sp == split or (sp is None and split == self.default_split(suite))):
                return True
        return False


def exposure_frame(data: Data) -> pd.DataFrame:
    """Every (model_id, suite, split) a model is exposed on (its own or an ancestor's selection), one row each."""
    import pandas as pd

    rows = {(m, s, sp or data.default_split(s)) for m, exp in data.exposure.items() for s, sp, _p, _w in exp}
    return pd.DataFrame(sorted(rows), columns=["model_id", "suite", "split"])


def suite_twins(twins: Mapping[str, Mapping[str, str]] | None) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Twins and default splits from a plain mapping, or from every suite.yaml (harness.suites) when None."""
    if twins is not None:
        return {s: dict(t) for s, t in twins.items()}, {}
    found: dict[str, dict[str, str]] = {}
    defaults: dict[str, str] = {}
    try:  # only each suite.yaml (twins, default split): no task YAMLs or data files, so it is quick
        from harness.suites import suite_specs

        for name, spec in suite_specs().items():
            defaults[name] = spec.default_split
            if spec.twins:
                found[name] = dict(spec.twins)
    except Exception:  # noqa: BLE001 - a broken suite folder must not stop the analysis; twins then come from runs
        pass
    return found, defaults


def infer_defaults(scores: pd.DataFrame, defaults: dict[str, str]) -> None:
    """Default split of suites without a suite.yaml: 'public' if scored, else runs without a split ('default')."""
    for suite, splits in scores.groupby("suite")["split"]:
        if suite not in defaults:
            names = set(splits)
            defaults[suite] = "public" if "public" in names else "default" if "default" in names else min(names)


def infer_twins(scores: pd.DataFrame, twins: dict[str, dict[str, str]], defaults: dict[str, str]) -> None:
    """Add twins the runs show: a suite's heldout/twin/perturbed split probes its default split."""
    for suite, split in scores[["suite", "split"]].drop_duplicates().itertuples(index=False):
        if split in TWIN_SPLIT_NAMES and split != defaults.get(suite, "public"):
            kind = "perturbed" if split in ("twin", "perturbed") else split
            known = twins.setdefault(suite, {})
            if f"{suite}:{split}" not in known.values():
                known.setdefault(kind, f"{suite}:{split}")


def gather(store: Store, twins: Mapping[str, Mapping[str, str]] | None = None,
           default_splits: Mapping[str, str] | None = None) -> Data:
    """Everything the flags need, including the paired twin gaps (the one query over per-sample rows)."""
    data = gather_base(store, twins, default_splits)
    data.gaps = twin_gaps(store, data)
    return data


def gather_base(store: Store, twins: Mapping[str, Mapping[str, str]] | None = None,
                default_splits: Mapping[str, str] | None = None) -> Data:
    """Models (with depth), lineage, suite scores, twins and exposure; no per-sample reads (gaps left empty)."""
    from harness.suites import score_rules

    twin_map, defaults = suite_twins(twins)
    defaults.update(default_splits or {})
    rules = score_rules()  # each suite's own aggregation, from its suite.yaml
    with store.db.read() as con:  # one consistent snapshot, even while a writer is busy
        models = views.models(con)
        edges = views.edges(con)
        scores = views.suite_scores(con, defaults, rules)
        sels = views.selections(con)
        evolve = views.evolve_candidates(con)
    graph = Graph.from_edges(edges)
    depth = graph.depths(models["model_id"].tolist())
    models["depth"] = models["model_id"].map(depth).fillna(0).astype(int)
    models["parents"] = models["model_id"].map(lambda m: len(graph.parents.get(m, ())))
    infer_defaults(scores, defaults)
    infer_twins(scores, twin_map, defaults)
    own: dict[str, set] = {}
    for r in sels.itertuples(index=False):
        split = None if r.split is None or (isinstance(r.split, float) and math.isnan(r.split)) else r.split
        own.setdefault(r.model_id, set()).add((r.suite, split, r.process, r.model_id))
    exposure = graph.propagate(models["model_id"].tolist(), own)
    names = dict(zip(models["model_id"].tolist(), models["name"].tolist(), strict=True))
    return Data(models, graph, scores, twin_map, defaults, exposure, _empty_gaps(), names, evolve=evolve)


def _empty_gaps() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=["model_id", "suite", "kind", "twin", "public", "twin_value", "gap", "se",
                                 "paired", "n"])


def twin_gaps(store: Store, data: Data, pair_all: bool = False) -> pd.DataFrame:
    """public - twin for every model, suite and twin kind it has both scores for, with a stderr that is paired
    over shared document ids when the two runs share at least half their ids (and MIN_PAIRED_DOCS), else
    unpaired (sqrt(se_public^2 + se_twin^2)).

    Pairing reads the per-sample rows, so it is done for the gaps that matter: source models (the reference and
    the roots of every chain) and gaps at least PAIR_MARGIN above the median gap of their suite and twin (a gap
    below that cannot reach a flag's minimum size); `pair_all` pairs every one."""
    import numpy as np
    import pandas as pd

    sc = data.scores
    frames = []
    for suite, kinds in data.twins.items():
        pub = sc[(sc["suite"] == suite) & (sc["split"] == data.default_split(suite))]
        for kind, ref in kinds.items():
            t_suite, _, t_split = ref.partition(":")
            t_split = t_split or data.default_split(t_suite)
            tw = sc[(sc["suite"] == t_suite) & (sc["split"] == t_split)]
            m = pub.merge(tw, on="model_id", suffixes=("", "_t"))
            if m.empty:
                continue
            frames.append(pd.DataFrame({
                "model_id": m["model_id"], "suite": suite, "kind": kind, "twin": f"{t_suite}:{t_split}",
                "public": m["value"], "twin_value": m["value_t"], "se_public": m["se"], "se_twin": m["se_t"],
                "run_a": m["run_id"], "run_b": m["run_id_t"], "n_public": m["n"], "n_twin": m["n_t"],
            }))
    if not frames:
        return _empty_gaps()
    g = pd.concat(frames, ignore_index=True)
    g["key"] = g["model_id"] + "|" + g["suite"] + "|" + g["kind"]
    g["gap"] = g["public"] - g["twin_value"]
    g["se"] = np.sqrt(g["se_public"] ** 2 + g["se_twin"] ** 2)
    g["n"] = np.minimum(g["n_public"], g["n_twin"]).fillna(0).astype(int)
    g["paired"] = False
    # Pairing needs a scan of the per-sample rows; only gaps that could reach a flag need it (see the docstring).
    median = g.groupby(["suite", "kind"])["gap"].transform("median")
    roots = g["model_id"].map(lambda m: not data.graph.parents.get(m))
    wanted = g[pair_all | roots | (g["gap"] >= median + PAIR_MARGIN)]
    pd_ = views.paired_diffs(store, wanted[["key", "run_a", "run_b"]]).set_index("key")
    if len(pd_):
        pd_ = pd_.reindex(g["key"])
        n_common = pd_["n_common"].fillna(0).to_numpy()
        smaller = np.minimum(pd_["n_a"].fillna(0).to_numpy(), pd_["n_b"].fillna(0).to_numpy())
        paired = (n_common >= MIN_PAIRED_DOCS) & (n_common >= 0.5 * smaller)
        g["paired"] = paired
        g["gap"] = np.where(paired, pd_["diff"].to_numpy(), g["gap"])
        g["se"] = np.where(paired, np.sqrt(pd_["var"].fillna(0).to_numpy() / np.clip(n_common, 1, None)), g["se"])
        g["n"] = np.where(paired, n_common, g["n"]).astype(int)
    return g[["model_id", "suite", "kind", "twin", "public", "twin_value", "gap", "se", "paired", "n"]]
