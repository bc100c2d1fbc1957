"""What the overfitting analysis reads, gathered once: models, lineage, suite scores, exposure, and the gap between
each public score and its twins (paired over shared document ids where the twin shares them).

    data = gather(store, twins={"zoo_math": {"heldout": "zoo_math:heldout"}})

`twins` maps a suite to {kind: "suite:split" or TwinSpec} as in suite.yaml (a plain string is an independent twin);
None reads them from every suite.yaml, then adds what the store itself shows: any run on a split named heldout /
twin / perturbed of a suite is an independent twin of that suite's default split. Items are paired only through a
twin map (harness/twinmaps.py): an aligned or derived twin pairs each twin item with its public seed; an
independent twin is compared unpaired.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.analysis.lineage import Graph, merge_ids
from harness.run_questions import run_questions
from harness.store import frames as views
from harness.suite_schema import TwinSpec
from harness.suites import question_split, score_rules

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from harness.analysis.gap_rows import GapRows
    from harness.store import Store

TWIN_SPLIT_NAMES = ("heldout", "twin", "perturbed")
MIN_PAIRED_DOCS = 20      # mapped items needed for a paired gap ...
MIN_PAIRED_SEEDS = 10     # ... from at least this many public seeds (the clusters of the stderr)
GAP_COLUMNS = ["model_id", "suite", "kind", "twin", "relation", "public", "twin_value", "gap", "se", "paired", "n"]


@dataclass
class Data:
    models: pd.DataFrame            # model_id, name, kind, method, ..., depth
    graph: Graph
    scores: pd.DataFrame            # views.suite_scores
    twins: dict[str, dict[str, TwinSpec]]
    default_splits: dict[str, str]
    exposure: dict[str, frozenset]  # model_id -> {(suite, split|None, process, selected model_id)}
    gaps: pd.DataFrame              # GAP_COLUMNS
    names: dict[str, str]
    rows_cache: GapRows | None = None  # gap_rows.gap_rows
    verdicts_cache: dict | None = None  # verdicts.twin_tests, per Thresholds
    evolve: pd.DataFrame | None = None  # views.evolve_candidates
    suite_dirs: dict[str, Path] | None = None  # suite -> its folder (where its twin maps live)
    version: str | None = None  # the store's version when read, where the reader knows it (the dashboard's)
    exposed_cache: dict | None = None  # exposed_on, per distinct exposure set

    def default_split(self, suite: str) -> str:
        return self.default_splits.get(suite, "public")

    def on_default_split(self, scores: pd.DataFrame) -> np.ndarray:
        """Which rows of a scores frame are on their suite's default split (a boolean array): the default split
        looked up once per suite, not once per row."""
        import numpy as np
        import pandas as pd

        codes, suites = pd.factorize(scores["suite"], use_na_sentinel=False)
        want = np.array([self.default_split(s) for s in suites], dtype=object)[codes]
        return scores["split"].to_numpy(dtype=object) == want

    def in_sample(self, model_id: str, suite: str, split: str | None = None) -> bool:
        """Whether this model or an ancestor was selected on this suite and split (None: the default split), a judge's
        rating of a split being on that split's questions (harness.suites.question_split)."""
        on = self.exposed_on(model_id)
        return bool(on) and (suite, question_split(split or self.default_split(suite))) in on

    def exposed_on(self, model_id: str) -> frozenset[tuple[str, str]]:
        """The (suite, split) pairs whose questions this model or an ancestor was selected on (a selection without a
        split: its suite's default split), found once per distinct exposure set (models share them:
        lineage.Graph.propagate)."""
        selections = self.exposure.get(model_id, frozenset())
        if not selections:
            return frozenset()
        if self.exposed_cache is None:
            self.exposed_cache = {}
        found = self.exposed_cache.get(selections)
        if found is None:
            found = self.exposed_cache[selections] = frozenset(
                (s, question_split(sp or self.default_split(s))) for s, sp, _p, _w in selections)
        return found


def exposure_frame(data: Data) -> pd.DataFrame:
    """Every (model_id, suite, split) a model is exposed on (its own or an ancestor's selection), one row each; the
    split is the one whose questions were selected on (harness.suites.question_split: a judge rating's split)."""
    import pandas as pd

    rows = {(m, s, sp) for m in data.exposure for s, sp in data.exposed_on(m)}
    return pd.DataFrame(sorted(rows), columns=["model_id", "suite", "split"])


def suite_twins(twins: Mapping[str, Mapping[str, str | TwinSpec]] | None,
                ) -> tuple[dict[str, dict[str, TwinSpec]], dict[str, str], dict[str, Path]]:
    """Twins, default splits and suite folders from a plain mapping, or from every suite.yaml (harness.suites)
    when None."""
    if twins is not None:
        return {s: {k: TwinSpec.of(v) for k, v in t.items()} for s, t in twins.items()}, {}, {}
    found: dict[str, dict[str, TwinSpec]] = {}
    defaults: dict[str, str] = {}
    dirs: dict[str, Path] = {}
    try:  # only each suite.yaml (twins, default split): no task YAMLs or data files, so it is quick
        from harness.suites import suite_files, suite_specs

        folders = suite_files()
        for name, spec in suite_specs().items():
            defaults[name] = spec.default_split
            dirs[name] = folders[name].parent
            if spec.twins:
                found[name] = dict(spec.twins)
    except Exception:  # noqa: BLE001 - a broken suite folder must not stop the analysis; twins then come from runs
        pass
    return found, defaults, dirs


def infer_defaults(scores: pd.DataFrame, defaults: dict[str, str]) -> None:
    """Default split of suites without a suite.yaml: 'public' if scored, else runs without a split ('default')."""
    for suite, splits in scores.groupby("suite")["split"]:
        if suite not in defaults:
            names = set(splits)
            defaults[suite] = "public" if "public" in names else "default" if "default" in names else min(names)


def infer_twins(scores: pd.DataFrame, twins: dict[str, dict[str, TwinSpec]], defaults: dict[str, str]) -> None:
    """Add twins the runs show: a suite's heldout/twin/perturbed split probes its default split (independent:
    without a map nothing says which item is which)."""
    for suite, split in scores[["suite", "split"]].drop_duplicates().itertuples(index=False):
        if split in TWIN_SPLIT_NAMES and split != defaults.get(suite, "public"):
            kind = "perturbed" if split in ("twin", "perturbed") else split
            known = twins.setdefault(suite, {})
            if f"{suite}:{split}" not in {t.ref for t in known.values()}:
                known.setdefault(kind, TwinSpec(ref=f"{suite}:{split}"))


def gather(store: Store, twins: Mapping[str, Mapping[str, str | TwinSpec]] | None = None,
           default_splits: Mapping[str, str] | None = None) -> Data:
    """Everything the flags need, including the paired twin gaps (the one query over per-sample rows)."""
    from harness.analysis.twin_gaps import twin_gaps

    data = gather_base(store, twins, default_splits)
    data.gaps = twin_gaps(store, data)
    return data


def gather_base(store: Store, twins: Mapping[str, Mapping[str, str | TwinSpec]] | None = None,
                default_splits: Mapping[str, str] | None = None) -> Data:
    """Models (with depth), lineage, suite scores, twins and exposure; no per-sample reads (gaps left empty)."""
    twin_map, defaults, dirs = suite_twins(twins)
    defaults.update(default_splits or {})
    rules = score_rules()  # each suite's own aggregation, from its suite.yaml
    # one consistent snapshot, even while a writer is busy; the suite scores (the longest query) are read on a
    # second connection while the lineage is walked
    with store.db.read() as con, store.db.alongside(
            con, lambda second: views.suite_scores(second, dict(defaults), rules=rules,
                                                   questions=run_questions)) as read_scores:
        models = views.models(con)
        edges = views.edges(con)
        sels = views.selections(con)
        evolve = views.evolve_candidates(con)
        graph = Graph.from_edges(edges)
        _add_depths(models, graph)
        exposure = graph.propagate(models["model_id"].tolist(), _selections(sels))
        scores = read_scores()
    infer_defaults(scores, defaults)
    infer_twins(scores, twin_map, defaults)
    names = dict(zip(models["model_id"].tolist(), models["name"].tolist(), strict=True))
    return Data(models, graph, scores, twin_map, defaults, exposure, _empty_gaps(), names, evolve=evolve,
                suite_dirs=dirs)


def _add_depths(models: pd.DataFrame, graph: Graph) -> None:
    """Each model's depth, merge depth (merges only) and number of parents, as columns."""
    depth = graph.depths(models["model_id"].tolist())
    models["depth"] = models["model_id"].map(depth).fillna(0).astype(int)
    merge_depth = graph.merge_depths(models["model_id"].tolist(), merge_ids(models))
    models["merge_depth"] = models["model_id"].map(merge_depth).fillna(0).astype(int)
    models["parents"] = models["model_id"].map(lambda m: len(graph.parents.get(m, ())))


def _selections(sels: pd.DataFrame) -> dict[str, set]:
    """Per model, its own selections: {(suite, split or None, process, model_id)}."""
    own: dict[str, set] = {}
    for r in sels.itertuples(index=False):
        split = None if r.split is None or (isinstance(r.split, float) and math.isnan(r.split)) else r.split
        own.setdefault(r.model_id, set()).add((r.suite, split, r.process, r.model_id))
    return own


def _empty_gaps() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=GAP_COLUMNS)
