"""Signal 3 of the overfitting analysis (harness/analysis/overfit.py, docs/overfitting.md): lineage divergence.

    from harness.analysis.divergence import divergence_flags
    flags = divergence_flags(data, THRESHOLDS)     # list[Flag]: one lineage_divergence flag per (model, suite)

Along merges of merges (merge depth >= `Thresholds.min_depth`), a model's public gain over its roots that its twin
does not follow: its excess over the references' gap minus its roots' excess, tested against sampling error plus
the between-model spread of the natural gap, with Benjamini-Hochberg over the store and a minimum size
(`divergence_min`). Each flag carries the chain of gaps from a root down to the model.
"""

from __future__ import annotations

from harness.analysis.evidence import Data
from harness.analysis.flags import Flag, Thresholds, bh_reject, interval, p_one_sided, pts, severity
from harness.analysis.gap_rows import GapRows, gap_rows
from harness.analysis.verdicts import reference_pools, robust_reference


def _chain(data: Data, rows: GapRows, mid: str, suite: str, kind: str, depth: dict[str, int]) -> list[dict]:
    """The scored models from a root down to the model: from the model up, at each step the deepest parent (then the
    largest gap), a parent never scored on the twin standing for its best scored line (lineage.Graph.stand_ins, as
    a twin gap's parent_gap looks through it). It had skipped unscored parents: a chain through an unscored merge
    went to a shallower parent, or stopped short of any root."""
    index, c = rows.index, rows.col

    def scored(node: str) -> tuple[int, float, str] | None:  # (depth, gap, the scored model reached)
        i = index.get((node, suite, kind))
        return None if i is None else (depth.get(node, 0), c["gap"][i], node)

    def best(node: str, parts: list[tuple[int, float, str] | None]) -> tuple[int, float, str] | None:
        got = [x for x in parts if x is not None]
        return (depth.get(node, 0), *max(got, key=lambda x: x[:2])[1:]) if got else None

    chain: list[dict] = []
    node: str | None = mid
    while node is not None and node not in {x["model_id"] for x in chain}:
        i = index.get((node, suite, kind))
        if i is None:
            break
        chain.append({"model_id": node, "model": data.names.get(node, node[:12]), "public": round(c["public"][i], 4),
                      "twin": round(c["twin_value"][i], 4), "gap": round(c["gap"][i], 4)})
        got = [x for x in data.graph.stand_ins(node, scored, best) if x is not None]
        node = max(got, key=lambda x: x[:2])[2] if got else None
    return chain[::-1]


def _root_means(c: dict[str, list], at: dict[str, int], roots: list[str]) -> tuple[int, float, float, float, float]:
    """How many roots are scored, their mean public, twin and gap, and the variance of the mean gap; `at`: model ->
    gap row of one (suite, twin kind), `roots` sorted (the sum must not follow the hash seed)."""
    k, pub, twin, gap, var = 0, 0.0, 0.0, 0.0, 0.0
    public, twin_value, gaps, se = c["public"], c["twin_value"], c["gap"], c["se"]
    for q in roots:
        i = at.get(q)
        if i is not None:
            k += 1
            pub += public[i]
            twin += twin_value[i]
            gap += gaps[i]
            var += se[i] ** 2
    if not k:
        return 0, 0.0, 0.0, 0.0, 0.0
    return k, pub / k, twin / k, gap / k, var / k ** 2


def _spreads(data: Data, rows: GapRows) -> dict[tuple[str, str], float]:
    """Between-model spread (tau) of the natural gap per (suite, twin kind), over the reference pool."""
    return {key: robust_reference([v[0] for v in pool.values()], [v[1] for v in pool.values()])[1]
            for key, pool in reference_pools(data, rows).items()}


def divergence_flags(data: Data, t: Thresholds) -> list[Flag]:
    """Along merges of merges (merge depth >= min_depth): the model's excess over the references' gap minus its
    roots' excess, tested against sampling error plus the spread of the natural gap between models (a clean model
    differs from its roots by that spread: a better model on a harder twin is not divergent)."""
    rows = gap_rows(data)
    depth = dict(zip(data.models["model_id"].tolist(), data.models["merge_depth"].tolist(), strict=True))
    tests = _divergence_tests(data, rows, depth, t)
    out = []
    for mid, suite, kind, r, k, pub_gain, twin_gain, div, se, p in tests:
        name = data.names.get(mid, mid[:12])
        ev = {"suite": suite, "twin": r["twin"], "twin_kind": kind, "depth": depth.get(mid, 0), "roots": k,
              "public_gain": round(pub_gain, 4), "twin_gain": round(twin_gain, 4),
              "divergence": round(div, 4), "divergence_ci": interval(div, se), "p_value": p,
              "chain": _chain(data, rows, mid, suite, kind, depth), "in_sample": data.in_sample(mid, suite)}
        out.append(Flag(
            mid, name, "lineage_divergence", severity(div, t), suite,
            f"Over {depth.get(mid, 0)} merge steps {name} gained {pts(pub_gain)} on {suite} over its {k} roots "
            f"while its {kind} twin moved {pts(twin_gain)}: a divergence of {pts(div)} "
            f"[{pts(ev['divergence_ci'][0])}, {pts(ev['divergence_ci'][1])}].", ev))
    return out


def _divergence_tests(data: Data, rows: GapRows, depth: dict[str, int], t: Thresholds) -> list[tuple]:
    """(model, suite, kind, row, roots, public gain, twin gain, divergence, se, p) of the rows deep enough, with
    scored roots and a public gain, that Benjamini-Hochberg rejects with a divergence of at least divergence_min:
    the smallest p per (model, suite). Over arrays: the roots' means once per distinct (roots, suite, kind), the
    squares and tails through Python's own ** and erfc (each figure is the per-row formula's, bit for bit)."""
    import numpy as np

    keys, se_gap = rows.keys_, rows.col["se"]
    deep = np.flatnonzero(~(np.array([depth.get(m, 0) for m in rows.col["model_id"]], dtype=float) < t.min_depth))
    roots, none = data.graph.roots_of(data.models["model_id"].tolist()), frozenset()
    at: dict[tuple[str, str], dict[str, int]] = {}  # (suite, kind) -> model -> gap row
    for i, (mid, suite, kind) in enumerate(keys):
        at.setdefault((suite, kind), {})[mid] = i
    memo: dict[tuple, tuple] = {}  # one pass per distinct (roots, suite, kind), the roots sorted once per set
    ordered: dict[frozenset, list[str]] = {}
    means = []
    for i in deep.tolist():
        mid, suite, kind = keys[i]
        group = (roots.get(mid, none), suite, kind)
        found = memo.get(group)
        if found is None:
            order = ordered.get(group[0])
            if order is None:
                order = ordered[group[0]] = sorted(group[0])
            found = memo[group] = _root_means(rows.col, at[(suite, kind)], order)
        means.append(found)
    if not means:
        return []
    k, pub0, twin0, gap0, se2 = (np.array(c, dtype=float) for c in zip(*means, strict=True))
    col = {c: rows.array(c)[deep] for c in ("public", "twin_value", "gap")}
    pub_gain, twin_gain, div = col["public"] - pub0, col["twin_value"] - twin0, col["gap"] - gap0
    live = np.flatnonzero((k != 0) & ~(pub_gain <= 0))
    idx, k, se2, pub_gain, twin_gain, div = (a[live] for a in (deep, k, se2, pub_gain, twin_gain, div))
    spread = _spreads(data, rows)
    tau2 = np.array([spread.get(keys[i][1:], 0.0) ** 2 for i in idx.tolist()], dtype=float)
    se = np.sqrt(np.array([se_gap[i] ** 2 for i in idx.tolist()], dtype=float) + se2 + tau2 * (1 + 1 / k))
    with np.errstate(divide="ignore", invalid="ignore"):  # an unknown stderr (NaN): p NaN, never rejected
        z = np.where(se == 0, np.where(div > 0, np.inf, 0.0), div / se)
    p = [p_one_sided(v) for v in z.tolist()]
    best: dict[tuple[str, str], int] = {}
    for j, rej in enumerate(bh_reject(p, t.fdr)):
        key = keys[idx[j]][:2]
        if rej and div[j] >= t.divergence_min and (key not in best or p[j] < p[best[key]]):
            best[key] = j
    return [(*keys[idx[j]], rows.row(int(idx[j])), int(k[j]), float(pub_gain[j]), float(twin_gain[j]), float(div[j]),
             float(se[j]), p[j]) for j in best.values()]
