"""Benchmark-overfitting flags across merge lineages (docs/overfitting.md).

    from harness.analysis.overfit import analyse
    flags = analyse(store)                         # list[Flag], most severe first
    flags = analyse(store, twins={"zoo_math": {"heldout": "zoo_math:heldout"}})

Signals: `exposure` (selected on a suite: its scores there are in-sample), `twin_gap` (public score far above its
held-out/perturbed twin, more than in unrelated reference models), `lineage_divergence` (public gains along a chain
of merges that the twins do not follow: harness/analysis/divergence.py) and `specialisation` (a gain on the
optimised suite with significant losses elsewhere). Each flag has a severity, its evidence (numbers with 95%
intervals) and a one-sentence explanation. Significance across the many models and twins of a store is controlled
with Benjamini-Hochberg (false discovery rate `Thresholds.fdr`) on one-sided normal p-values, and an effect must
also clear a minimum size. The flag vocabulary (Flag, Thresholds, THRESHOLDS, SEVERITIES, SIGNALS) and the shared
statistics live in harness/analysis/flags.py; they are importable from here too.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.analysis.divergence import divergence_flags
from harness.analysis.evidence import Data, gather
from harness.analysis.flags import (
    SEVERITIES,
    SIGNALS,
    THRESHOLDS,
    Z95,
    Flag,
    Thresholds,
    interval,
    p_one_sided,
    pct,
    pts,
    severity,
)
from harness.analysis.gap_rows import GapRows, gap_rows

if TYPE_CHECKING:
    from harness.store import Store


def analyse(store: Store, twins: Mapping[str, Mapping[str, str]] | None = None,
            default_splits: Mapping[str, str] | None = None, thresholds: Thresholds = THRESHOLDS) -> list[Flag]:
    """Every flag for every model in the store, most severe first (read-only)."""
    return analyse_data(gather(store, twins, default_splits), thresholds)


def analyse_data(data: Data, t: Thresholds = THRESHOLDS) -> list[Flag]:
    twin = twin_gap_flags(data, t)
    twin += evolve_flags(data, t, {(f.model_id, f.suite): f for f in twin})
    flags = exposure_flags(data) + twin + divergence_flags(data, t) + specialisation_flags(data, t)
    return sorted(flags, key=lambda f: (-f.rank, SIGNALS.index(f.signal), f.model, f.suite))


# ------------------------------------------------------------------------------------------------ signal 1
def exposure_flags(data: Data) -> list[Flag]:
    """One info flag per selection: the model's (and its descendants') scores there are in-sample."""
    out = []
    reach = Counter(x for exposed in data.exposure.values() for x in exposed)  # the selector and its descendants
    for mid, exposed in data.exposure.items():
        own = [x for x in exposed if x[3] == mid]  # its own selections (a few models), sorted: not its ancestors'
        for suite, split, process, _who in sorted(own, key=str) if own else ():
            n_desc = reach[(suite, split, process, mid)] - 1
            where = f"{suite}:{split or data.default_split(suite)}"
            out.append(Flag(
                mid, data.names.get(mid, mid[:12]), "exposure", "info", suite,
                f"{data.names.get(mid, mid[:12])} was selected on {where} by {process}, so its scores there and "
                f"those of its {n_desc} descendants are in-sample.",
                {"suite": suite, "split": split or data.default_split(suite), "process": process,
                 "descendants_in_sample": n_desc},
            ))
    return out


# ------------------------------------------------------------------------------------------------ signal 2
def twin_gap_flags(data: Data, t: Thresholds) -> list[Flag]:
    """Calibrated twin-gap tests (harness.analysis.verdicts) that Benjamini-Hochberg rejects with an excess of at
    least gap_min: the strongest per (model, suite). Only the flagged tests are made into TwinTests."""
    from harness.analysis.verdicts import twin_tests

    rows, tests = gap_rows(data), twin_tests(data, t)
    best: dict[tuple[str, str], Any] = {}
    for i, flagged in enumerate(tests.flagged):
        if flagged:
            x = tests[i]
            if (x.model_id, x.suite) not in best or x.p < best[(x.model_id, x.suite)].p:
                best[(x.model_id, x.suite)] = x
    return [_twin_flag(data, rows, x, t) for x in best.values()]


def _parent_gap(data: Data, rows: GapRows, mid: str, suite: str, kind: str) -> tuple[float, float] | None:
    """The mean gap of the model's parents on this twin and its stderr. A parent never scored on the twin stands for
    the mean of its own parents, up to scored ancestors (lineage.Graph.stand_ins: a merge of an overfit model carries
    its gap); None when a parent's line has no scored model (its gap, and so the origin of the model's, is unknown).
    It had averaged the scored parents only: an unscored merge of an overfit model read as nothing, and the gap as
    new."""

    def scored(node: str) -> tuple[float, float] | None:  # (gap, variance)
        i = rows.index.get((node, suite, kind))
        return None if i is None else (rows.col["gap"][i], rows.col["se"][i] ** 2)

    def mean(_node: str, parts: list[tuple[float, float] | None]) -> tuple[float, float] | None:
        got = [x for x in parts if x is not None]
        if not parts or len(got) < len(parts):
            return None
        return sum(g for g, _v in got) / len(got), sum(v for _g, v in got) / len(got) ** 2

    found = data.graph.stand_ins(mid, scored, mean)
    known = [x for x in found if x is not None]
    if not found or len(known) < len(found):
        return None
    return sum(x[0] for x in known) / len(known), math.sqrt(sum(x[1] for x in known)) / len(known)


def _twin_flag(data: Data, rows: GapRows, x: Any, t: Thresholds) -> Flag:
    r, ref, mid, suite, kind = x.row, x.ref, x.model_id, x.suite, x.kind
    name = data.names.get(mid, mid[:12])
    par = _parent_gap(data, rows, mid, suite, kind)
    ev: dict[str, Any] = {
        "suite": suite, "split": data.default_split(suite), "twin": r["twin"], "twin_kind": kind,
        "relation": r.get("relation", "independent"),
        "public": round(r["public"], 4), "twin_score": round(r["twin_value"], 4),
        "gap": round(r["gap"], 4), "gap_ci": interval(r["gap"], r["se"]), "paired": bool(r["paired"]),
        "n": int(r["n"]), "reference_gap": round(ref.centre, 4), "reference_spread": round(ref.spread, 4),
        "reference_slope": round(ref.slope, 4),
        "reference_models": ref.k, "reference": ref.basis,
        "excess_over_reference": round(x.excess, 4), "excess_ci": interval(x.excess, x.se), "p_value": x.p,
        "smallest_detectable_excess": round(x.mde, 4), "in_sample": data.in_sample(mid, suite),
    }
    origin = "new" if par is not None or not data.graph.parents.get(mid) else "unknown"
    if par is not None:
        over_par = r["gap"] - par[0]
        se_par = math.sqrt(r["se"] ** 2 + par[1] ** 2)
        ev.update(parent_gap=round(par[0], 4), excess_over_parents=round(over_par, 4),
                  excess_over_parents_ci=interval(over_par, se_par))
        if over_par - Z95 * se_par <= 0 or over_par < t.gap_min / 2:
            origin = "inherited"
    ev["origin"] = origin
    tail = ("the gap is new in this model" if origin == "new" and par is not None
            else "it inherits the gap from its parents" if origin == "inherited" else "it has no parents"
            if origin == "new" else f"a parent's line is not scored on {r['twin']}, so whether it inherits the gap "
            "is unknown")
    sentence = (f"{name} scores {pct(r['public'])} on {suite} but {pct(r['twin_value'])} on its {kind} twin "
                f"{r['twin']}, a gap {pts(x.excess)} [{pts(ev['excess_ci'][0])}, {pts(ev['excess_ci'][1])}] "
                f"beyond the natural gap ({ref.basis}{' ' + pct(r['public']) if ref.slope else ''}: "
                f"{pts(ref.centre)}, spread {100 * ref.spread:.1f} pts); "
                f"{tail}.")
    return Flag(mid, name, "twin_gap", severity(x.excess, t), suite, sentence, ev)


def evolve_flags(data: Data, t: Thresholds, existing: dict[tuple[str, str], Flag]) -> list[Flag]:
    """Signal 2 from an evolve run's own records: fitness (the search split) minus the held-out score of the pick,
    against the same gap among generation-0 candidates (their spread gives the interval). Attached to the pick's
    run-based twin_gap flag when there is one, else a twin_gap flag of its own."""
    out: list[Flag] = []
    if data.evolve is None or data.evolve.empty:
        return out
    for evolve_id, rows in data.evolve.groupby("evolve_id"):
        ev = _evolve_evidence(data, str(evolve_id), rows, t)
        if ev is None:
            continue
        mid, suite = ev.pop("model_id"), ev["suite"]
        if (mid, suite) in existing:
            existing[(mid, suite)].evidence["evolve"] = ev
            continue
        name = data.names.get(mid, mid[:12])
        out.append(Flag(
            mid, name, "twin_gap", severity(ev["excess"], t), suite,
            f"Evolve run {evolve_id} pushed the fitness of {name} on {suite} to {pct(ev['final_fitness'])} while its "
            f"held-out score is {pct(ev['final_heldout'])}: a search gap {pts(ev['excess'])} "
            f"[{pts(ev['excess_ci'][0])}, {pts(ev['excess_ci'][1])}] beyond that of generation 0.", ev))
    return out


def _evolve_evidence(data: Data, evolve_id: str, rows: Any, t: Thresholds) -> dict[str, Any] | None:
    """The evidence of a run whose pick's excess is at least gap_min at z >= evolve_z (both before rounding), else
    None."""
    first = rows[rows["generation"] == rows["generation"].min()]
    gaps0 = (first["fitness"] - first["heldout"]).tolist()
    best = rows["best_model_id"].iloc[0]
    picked = rows[rows["model_id"] == best] if isinstance(best, str) else rows.iloc[0:0]
    if picked.empty:
        last = rows[rows["generation"] == rows["generation"].max()]
        picked = last.loc[[last["fitness"].idxmax()]]
    row = picked.sort_values("generation").iloc[-1]
    k = len(gaps0)
    if k < 2 or row["generation"] == first["generation"].iloc[0]:
        return None
    base, sd = statistics.median(gaps0), math.sqrt(sum((g - sum(gaps0) / k) ** 2 for g in gaps0) / (k - 1))
    se = max(sd * math.sqrt(1 + 1 / k), 1e-9)
    final = row["fitness"] - row["heldout"]
    if not (final - base >= t.gap_min and (final - base) / se >= t.evolve_z):
        return None
    config = rows["config"].iloc[0]
    suite = _evolve_suite(config)
    history = rows.groupby("generation").apply(
        lambda g: {"generation": int(g.name), "best_fitness": round(float(g["fitness"].max()), 4),
                   "heldout_of_fittest": round(float(g.loc[g["fitness"].idxmax(), "heldout"]), 4)},
        include_groups=False).tolist()
    return {"source": "evolve", "evolve_id": evolve_id, "model_id": row["model_id"], "suite": suite or "evolve",
            "generations": int(rows["generation"].nunique()), "final_fitness": round(float(row["fitness"]), 4),
            "final_heldout": round(float(row["heldout"]), 4), "final_gap": round(float(final), 4),
            "generation0_gap": round(base, 4), "excess": round(float(final - base), 4),
            "excess_ci": interval(float(final - base), se), "z": round(float((final - base) / se), 2),
            "history": history}


def _evolve_suite(config: Any) -> str | None:
    """The suite an evolve run optimised: its first fitness suite (stored config), or a plain `suite` key."""
    import json

    try:
        stored = json.loads(config) if isinstance(config, str) else None
    except ValueError:
        return None
    if not isinstance(stored, dict):
        return None
    fitness = (stored.get("config") or {}).get("fitness") or []
    if fitness and isinstance(fitness[0], dict) and fitness[0].get("suite"):
        return str(fitness[0]["suite"])
    return stored.get("suite")


# ------------------------------------------------------------------------------------------------ signal 4
def specialisation_flags(data: Data, t: Thresholds) -> list[Flag]:
    """A model's gain over its parents on the (suite, split) it was selected on (a pick on a held-out split gained
    there, not on public), with significant losses on other suites' default splits; one flag per suite selected on
    (its selected split of the strongest gain)."""
    sc = data.scores
    cols = [sc[c].tolist() for c in ("model_id", "suite", "split", "value", "se")]
    val = {(m, s, sp): (v, e) for m, s, sp, v, e in zip(*cols, strict=True)}
    suites = sorted(set(sc["suite"][data.on_default_split(sc)].tolist()))
    out = []
    for mid, exposed in data.exposure.items():
        targets: dict[str, set[str]] = {}
        for s, sp, _p, who in exposed:
            if who == mid:
                targets.setdefault(s, set()).add(sp or data.default_split(s))
        ps = data.graph.parents.get(mid, ())
        if not targets or not ps:
            continue
        deltas = {s: _delta(val, mid, ps, s, data.default_split(s)) for s in suites}
        for target in sorted(targets):
            found = _selected_gain(val, mid, ps, target, targets[target], t)
            losses = _significant_losses(deltas, target, t) if found else None
            if not losses:
                continue
            split, gain = found
            worst = min(losses, key=lambda s: losses[s][0])
            size = -losses[worst][0]
            sev = "high" if size >= t.spec_high else "medium" if size >= t.spec_medium else "low"
            name = data.names.get(mid, mid[:12])
            ev = {"optimised_suite": target, "optimised_split": split, "gain": round(gain[0], 4),
                  "gain_ci": interval(*gain),
                  "losses": {s: {"delta": round(d[0], 4), "ci": interval(*d)} for s, d in losses.items()},
                  "parents": [data.names.get(p, p[:12]) for p in ps]}
            out.append(Flag(
                mid, name, "specialisation", sev, target,
                f"{name} gained {pts(gain[0])} over its parents on {target}:{split}, the split it was selected on, "
                f"but lost {pts(losses[worst][0])} [{pts(ev['losses'][worst]['ci'][0])}, "
                f"{pts(ev['losses'][worst]['ci'][1])}] on {worst}"
                + (f" and significantly on {len(losses) - 1} more suite(s)." if len(losses) > 1 else "."), ev))
    return out


def _selected_gain(val: dict, mid: str, parents: tuple | list, suite: str, splits: set[str],
                   t: Thresholds) -> tuple[str, tuple[float, float]] | None:
    """Of the splits of `suite` the model was selected on, the one whose gain over its parents is positive and
    significant at gain_z with the largest z (split, (gain, se)); None when none is (a NaN se: no gain)."""
    best = None
    for split in sorted(splits):
        gain = _delta(val, mid, parents, suite, split)
        if gain is None or gain[0] <= 0 or not gain[0] / max(gain[1], 1e-9) >= t.gain_z:
            continue
        if best is None or gain[0] / max(gain[1], 1e-9) > best[1][0] / max(best[1][1], 1e-9):
            best = (split, gain)
    return best


def _significant_losses(deltas: dict, target: str, t: Thresholds) -> dict[str, tuple[float, float]]:
    """Losses elsewhere of at least loss_min that survive Holm's correction over the model's other suites at the
    one-sided level of loss_z (each suite compared is one more chance of a spurious loss)."""
    others = {s: d for s, d in deltas.items() if s != target and d is not None}
    ps = sorted((p if p == p else 1.0, s) for p, s in  # an unknown stderr (NaN): no evidence of a loss
                ((p_one_sided(-d[0] / max(d[1], 1e-9)), s) for s, d in others.items()))
    level, out = p_one_sided(t.loss_z), {}
    for i, (p, s) in enumerate(ps):
        if p > level / (len(ps) - i):
            break
        if others[s][0] <= -t.loss_min:
            out[s] = others[s]
    return out


def _delta(val: dict, mid: str, parents: tuple | list, suite: str, split: str) -> tuple[float, float] | None:
    """Model minus the mean of its parents on one suite and split, with an unpaired stderr."""
    if (mid, suite, split) not in val:
        return None
    ps = [val[(p, suite, split)] for p in parents if (p, suite, split) in val]
    if not ps:
        return None
    v, e = val[(mid, suite, split)]
    mean = sum(p[0] for p in ps) / len(ps)
    se = math.sqrt(e ** 2 + sum(p[1] ** 2 for p in ps) / len(ps) ** 2)
    return v - mean, se


# ------------------------------------------------------------------------------------------------ summaries
def confusion(flags: list[Flag], truth: Mapping[str, bool | None], min_severity: str = "low") -> dict[str, Any]:
    """Count flagged models against a ground truth (model name -> should be flagged; None = not counted)."""
    floor = SEVERITIES.index(min_severity)
    flagged = {f.model for f in flags if f.rank >= floor}
    positives = {m for m, v in truth.items() if v is True}
    negatives = {m for m, v in truth.items() if v is False}
    return {
        "true_flags": len(flagged & positives), "false_flags": len(flagged & negatives),
        "missed": sorted(positives - flagged), "false": sorted(flagged & negatives),
        "positives": len(positives), "negatives": len(negatives), "flagged": len(flagged),
    }
