"""Which split a model was selected on: a pick on a suite's held-out split has seen that split's answers, not the
public split's, and the reverse. Every signal that reads the `selections` table (in-sample marks, reference pools,
specialisation) keys by (suite, split); each checked on a real store written through the store's own writers,
against pandas over the same rows and the selections as written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from harness.analysis.evidence import exposure_frame, gather
from harness.analysis.flags import THRESHOLDS
from harness.analysis.gap_rows import gap_rows
from harness.analysis.overfit import specialisation_flags
from harness.analysis.verdicts import reference_pools
from harness.store import LineageEdge, ModelRecord, RunRecord, Sample, Score, Store

N = 400
TWINS = {"zoo_math": {"heldout": "zoo_math:heldout"}}
BASE = {("zoo_math", "public"): 0.5, ("zoo_math", "heldout"): 0.5, ("zoo_lang", "public"): 0.6,
        ("zoo_logic", "public"): 0.6}
# model -> (parents, its own selection (suite, split) or None, scores that differ from BASE)
MODELS = {
    "p1": ((), None, {}),
    "p2": ((), None, {}),
    # picked on the held-out split, better only on public: no gain where it was picked (was flagged on public's)
    "x": (("p1", "p2"), ("zoo_math", "heldout"), {("zoo_math", "public"): 0.7, ("zoo_lang", "public"): 0.45}),
    # picked on the held-out split and better there, worse on zoo_lang: a specialist (was missed)
    "z": (("p1", "p2"), ("zoo_math", "heldout"), {("zoo_math", "heldout"): 0.7, ("zoo_lang", "public"): 0.45}),
    # picked on public and better there, worse on zoo_lang: a specialist (flagged before and after)
    "y": (("p1", "p2"), ("zoo_math", "public"), {("zoo_math", "public"): 0.7, ("zoo_lang", "public"): 0.45}),
    # a merge of x, selected on nothing itself: in-sample where x is
    "w": (("x", "p1"), None, {}),
}


def _write(path: Path) -> pd.DataFrame:
    """The store, and every sample as (model, suite, split, doc, score)."""
    store = Store(path)
    store.init()
    rows = []
    for mid, (parents, selected, scores) in MODELS.items():
        store.add_model(ModelRecord(mid, mid, None, "merge" if parents else "source"))
        if parents:
            store.add_lineage([LineageEdge(mid, p, "source", 1 / len(parents)) for p in parents])
        for (suite, split), p in {**BASE, **scores}.items():
            x = (np.arange(N) < round(p * N)).astype(float)
            run_id = f"{mid}-{suite}-{split}"
            task = f"{suite}_mc_{split}"
            store.start_run(RunRecord(run_id, mid, suite, "hf", "0", split=split))
            store.finish_run(run_id, [Score(task, "acc", float(x.mean()), float(x.std(ddof=1) / math.sqrt(N)), N)],
                             [Sample(task, d, "acc", float(v), doc_hash=f"{suite}/{split}/{d}")
                              for d, v in enumerate(x)])
            rows += [(mid, suite, split, d, v) for d, v in enumerate(x)]
        if selected:
            store.select(mid, selected[0], "user", split=selected[1])
    return pd.DataFrame(rows, columns=["model", "suite", "split", "doc", "score"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, pd.DataFrame]:
    path = tmp_path_factory.mktemp("selsplit") / "s.duckdb"
    return Store(path), _write(path)


def _exposed(store: Store) -> dict[str, set[tuple[str, str]]]:
    """By hand: each model's (suite, split) selections and those of its ancestors, from the stored rows."""
    with store.reading() as con:
        sels = con.execute("SELECT model_id, suite, split FROM selections").df()
        edges = con.execute("SELECT child_id, parent_id FROM lineage").df()
    own = {m: set(zip(g["suite"], g["split"], strict=True)) for m, g in sels.groupby("model_id")}
    parents = edges.groupby("child_id")["parent_id"].apply(list).to_dict()

    def up(m: str) -> set[tuple[str, str]]:
        return own.get(m, set()).union(*(up(p) for p in parents.get(m, [])))
    return {m: up(m) for m in MODELS}


def test_in_sample_follows_the_split_selected_on(built: tuple[Store, pd.DataFrame]) -> None:
    store, _ = built
    data, want = gather(store, twins=TWINS), _exposed(store)
    assert want["x"] == want["w"] == {("zoo_math", "heldout")} and want["y"] == {("zoo_math", "public")}
    for m in MODELS:
        for split in ("public", "heldout"):
            assert data.in_sample(m, "zoo_math", split) == (("zoo_math", split) in want[m]), (m, split)
    frame = exposure_frame(data)
    assert set(frame.itertuples(index=False, name=None)) == {(m, s, sp) for m, e in want.items() for s, sp in e}


def test_reference_pools_leave_out_only_who_is_exposed_on_the_suite_or_that_twin(
        built: tuple[Store, pd.DataFrame]) -> None:
    """The heldout twin's pool: models scored on both splits, exposed on neither zoo_math:public nor
    zoo_math:heldout (x, z and w picked on heldout; y on public); by hand: p1 and p2 only."""
    store, samples = built
    data, exposed = gather(store, twins=TWINS), _exposed(store)
    both = samples[samples["suite"] == "zoo_math"].groupby("model")["split"].nunique()
    want = {m for m in both[both == 2].index
            if not exposed[m] & {("zoo_math", "public"), ("zoo_math", "heldout")}}
    assert set(reference_pools(data, gap_rows(data))[("zoo_math", "heldout")]) == want == {"p1", "p2"}


def _hand_specialisation(samples: pd.DataFrame) -> dict[str, tuple[str, float, str]]:
    """model -> (split selected on, gain there over the mean of its parents, the suite of the worst significant
    loss), from the samples by pandas: unpaired stderrs, gain at z >= gain_z, losses on the other suites' public
    split at least loss_min and significant after Holm at loss_z."""
    t = THRESHOLDS
    g = samples.groupby(["model", "suite", "split"])["score"]
    val = pd.DataFrame({"v": g.mean(), "se": g.std(ddof=1) / np.sqrt(g.count())})

    def delta(m: str, suite: str, split: str) -> tuple[float, float]:
        ps = MODELS[m][0]
        parents = val.loc[[(p, suite, split) for p in ps]]
        v, se = val.loc[(m, suite, split)]
        return v - parents["v"].mean(), math.sqrt(se ** 2 + (parents["se"] ** 2).sum() / len(ps) ** 2)

    out = {}
    for m, (ps, selected, _scores) in MODELS.items():
        if not ps or not selected:
            continue
        gain, se = delta(m, *selected)
        if not gain / se >= t.gain_z:
            continue
        others = {s: delta(m, s, "public") for s in ("zoo_lang", "zoo_logic")}
        p = sorted((norm.sf(-d / e), s) for s, (d, e) in others.items())
        level, losses = norm.sf(t.loss_z), {}
        for i, (pv, s) in enumerate(p):
            if pv > level / (len(p) - i):
                break
            if others[s][0] <= -t.loss_min:
                losses[s] = others[s][0]
        if losses:
            out[m] = (selected[1], gain, min(losses, key=losses.get))
    return out


def test_specialisation_gain_is_measured_on_the_split_selected_on(built: tuple[Store, pd.DataFrame]) -> None:
    """x was picked on zoo_math:heldout, where it gained nothing: no specialisation (it was flagged for its +20 pts
    on public); z gained +20 pts on the held-out split it was picked on and lost 15 on zoo_lang: flagged (it was
    missed); y picked on public: flagged as before."""
    store, samples = built
    want = _hand_specialisation(samples)
    assert set(want) == {"y", "z"}
    flags = {f.model: f for f in specialisation_flags(gather(store, twins=TWINS), THRESHOLDS)}
    assert set(flags) == set(want)
    for m, (split, gain, worst) in want.items():
        ev = flags[m].evidence
        assert (ev["optimised_suite"], ev["optimised_split"]) == ("zoo_math", split)
        assert ev["gain"] == pytest.approx(gain, abs=1e-4)
        assert min(ev["losses"], key=lambda s: ev["losses"][s]["delta"]) == worst
        assert f"zoo_math:{split}" in flags[m].explanation
