"""The dashboard's only way to the data: cached, read-only queries over harness.analysis and the Store's read
connections (`store.db.read()`: a shared lock and a read-only DuckDB connection per query, never a write).

Results are cached with st.cache_data, keyed by the store path and its version (snapshots.fingerprint, which every
committed write changes), so a page render after the first is a cache hit and the render after a write shows it;
old versions leave with the TTL. `base` (lineage, scores, exposure) is a read-only shared st.cache_resource, to
spare pickling it on every rerun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import snapshots
import streamlit as st

from harness.analysis import evidence
from harness.analysis.coverage import CoverageTable
from harness.analysis.flags import SEVERITIES, Flag
from harness.analysis.twin_gaps import twin_gaps
from harness.store import frames as views

TTL = 30
IN_SAMPLE = "in-sample"
_PAUSE = {"lock": threading.Lock(), "depth": 0, "was_enabled": False}  # collector_paused's state


def db_path() -> str:
    from harness.paths import default_db_path

    return str(default_db_path())


def store_or_stop() -> str:
    """The store path, or an error and st.stop() when there is no store (the dashboard never creates one)."""
    path = db_path()
    if not Path(path).exists():
        st.error(f"No harness store at {path}. Run `harness db info` or evaluate a model, or pass --db.")
        st.stop()
    return path


@st.cache_resource(show_spinner=False)
def _store(db: str):
    from harness.store import Store

    return Store(db)


def base(db: str) -> evidence.Data:
    """Models (with depth and method), lineage, suite scores, twins and exposure (no per-sample reads) of the store
    as it is now: its version is the store's before the read (a write in between makes it older than what was
    read, never newer)."""
    return _base(db, snapshots.fingerprint(db))


@st.cache_resource(ttl=TTL, max_entries=4, show_spinner=False)
def _base(db: str, version: str) -> evidence.Data:
    """The one st.cache_resource: a shared object that pages only read, so the ~10 MB of lineage and scores of a
    large store are not pickled and unpickled on every rerun as st.cache_data would; same TTL."""
    return dataclasses.replace(evidence.gather_base(_store(db)), version=version)


def per_version(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(db, ...)` cached by its arguments and the store's version (snapshots.fingerprint), so the render after a
    write shows the new figures instead of those read before it until the TTL (which now only frees old versions)."""
    def keyed(db: str, version: str, *args: Any) -> Any:
        return fn(db, *args)

    keyed.__module__, keyed.__qualname__ = fn.__module__, fn.__qualname__  # Streamlit keys a cache by these
    cached = st.cache_data(ttl=TTL, show_spinner=False)(keyed)

    @functools.wraps(fn)
    def call(db: str, *args: Any) -> Any:
        return cached(db, snapshots.fingerprint(db), *args)

    return call


@per_version
def wide(db: str, columns: tuple[str, ...]) -> tuple[pd.DataFrame, ...]:
    """Leaderboard matrices (model_id x suite:split): value, interval low, interval high, in-sample."""
    sc = scores_marked(db)
    sc = sc.assign(column=sc["suite"] + ":" + sc["split"])
    sc = sc[sc["column"].isin(columns)]
    return tuple(sc.pivot_table(index="model_id", columns="column", values=v, aggfunc="first")
                 for v in ("value", "ci_low", "ci_high", "in_sample"))


@per_version
def method_splits(db: str) -> dict[str, list[str]]:
    """Each split merged models are scored on (a judge's rating split included) -> the suites scored there."""
    sc = scores_marked(db)
    merged = sc[sc["method"].notna()]
    return {split: sorted(suites) for split, suites in merged.groupby("split")["suite"].unique().items()}


@per_version
def method_stats(db: str, drop_in_sample: bool, split: str | None = None) -> pd.DataFrame:
    """Per merge method and suite: count, min, quartiles, max and mean of merged models' scores on `split` (None:
    each suite's default split), in % (a judge's rating as it is: `unit`); `drop_in_sample` leaves out the scores
    in-sample on that split."""
    data = base(db)
    sc = scores_marked(db)
    sc = sc[sc["method"].notna()]
    sc = sc[data.on_default_split(sc)] if split is None else sc[sc["split"] == split]  # default: once per suite
    if drop_in_sample:
        sc = sc[~sc["in_sample"]]
    raw = sc["metric"].isin(views.RAW_SCALE_METRICS).to_numpy()
    sc = sc.assign(score=np.where(raw, sc["value"], sc["value"] * 100), unit=np.where(raw, "rating", "%"))
    g = sc.groupby(["method", "suite", "unit"])["score"]
    out = g.agg(n="count", min="min", mean="mean", max="max")
    out["q1"], out["median"], out["q3"] = g.quantile(0.25), g.median(), g.quantile(0.75)
    return out.reset_index()


def prewarm(db: str) -> None:
    """Fill the caches (scores, then the analysis) in a background thread so the next page is a cache hit;
    a page that needs a value being computed waits for it (st.cache_data computes each key once)."""
    state = _prewarm_state(db)
    with state["lock"]:
        if state["thread"] is not None and state["thread"].is_alive():
            return
        state["thread"] = threading.Thread(target=_warm, args=(db,), daemon=True, name="harness-prewarm")
        state["thread"].start()


def _warm(db: str) -> None:
    try:
        with collector_paused():
            scores_marked(db)
            analysed(db)
    except Exception as exc:  # noqa: BLE001 - opportunistic: the page that needs the value reports the error
        logging.getLogger("harness.dashboard").warning("cache warm-up failed: %s", exc)


@functools.cache  # once per process
def freeze_what_lives() -> None:
    """After the first page has run: collect once, then move every object alive (the modules of Streamlit, pandas,
    DuckDB, Altair and harness: ~135,000 tracked containers, which live as long as the server) out of the cyclic
    collector's reach, so each of its full passes walks only what pages made since: 0.07 -> ~0.005 CPU s at
    10,000 models, and a cold Overfitting render makes one or more (docs/dashboard.md). Objects are still freed by
    their reference counts; a cycle among the frozen ones would never be, so they are unfrozen at exit, where the
    interpreter's last collection frees them (else extension types report leaks: nanobind's in Triton)."""
    import atexit

    gc.collect()
    gc.freeze()
    atexit.register(gc.unfreeze)


@contextlib.contextmanager
def collector_paused():
    """No cyclic collection while a page renders or an analysis is computed; the collector runs again after.

    A cold page at 10,000 models allocates millions of short-lived objects (frames, arrays, 30,000 coverage rows),
    and the collector's hundreds of passes over them took 0.1-0.25 of a cold Overfitting render's 2-3 CPU s
    (docs/dashboard.md). What they would find is freed at the next collection after the render instead of during
    it (memory is reclaimed by reference counts as before; only garbage in cycles waits: +50 MB of peak RSS).
    Renders of several sessions may overlap: the first to enter pauses, the last to leave resumes, and only a
    collector that was enabled is ever enabled again."""
    with _PAUSE["lock"]:
        if _PAUSE["depth"] == 0:
            _PAUSE["was_enabled"] = gc.isenabled()
            gc.disable()
        _PAUSE["depth"] += 1
    try:
        yield
    finally:
        with _PAUSE["lock"]:
            _PAUSE["depth"] -= 1
            if _PAUSE["depth"] == 0 and _PAUSE["was_enabled"]:
                gc.enable()


@st.cache_resource(show_spinner=False)
def _prewarm_state(db: str) -> dict:
    return {"lock": threading.Lock(), "thread": None}


def analysed(db: str) -> snapshots.Analysis:
    """The twin gaps of every model and every flag. Stale while revalidating: when the store has changed since the
    last analysis, that analysis is returned at once and the new one is computed in the background (the pages say
    so, `analysis_is_stale`); only a store never analysed before makes a page wait for it."""
    version = snapshots.fingerprint(db)
    state = _analysis_state(db)
    current = state["current"]
    if current is not None and current[0] == version:
        return current[1]
    kept = snapshots.load(db, version)  # computed by an earlier server, or by another page's thread
    if kept is not None:
        state["current"] = (version, kept)
        return kept
    older = current[1] if current is not None else snapshots.latest(db)
    if older is None:  # one computation at a time: the warm-up thread may be on it already (no store lock held)
        with st.spinner("Analysing the lineages..."), state["compute"]:
            current = state["current"]
            if current is not None and current[0] == version:
                return current[1]
            result = snapshots.compute_and_keep(db, version, lambda: _compute_analysis(db, version))
            state["current"] = (version, result)
        return result
    _refresh_in_background(db, version, state)
    if current is None:
        state["current"] = (None, older)  # an earlier server's analysis, of an unknown earlier version
    return older


def analysis_is_stale(db: str) -> bool:
    """Whether the flags shown come from an earlier version of the store (a refresh is running)."""
    current = _analysis_state(db)["current"]
    return current is None or current[0] != snapshots.fingerprint(db)


def _compute_analysis(db: str, version: str | None = None) -> snapshots.Analysis:
    """The analysis of the store at `version`: from the cached `base` when it was read at that version, else (the
    background refresh: None) from a new read; a `base` cached before a write would give the flags of the store
    before it, kept as the flags of the store after it."""
    shared = base(db) if version is not None else None
    if shared is None or shared.version != version:
        return snapshots.analyse_store(db)
    data = dataclasses.replace(shared, gaps=twin_gaps(_store(db), shared), rows_cache=None, verdicts_cache=None)
    return snapshots.analyse_gathered(data)


def _refresh_in_background(db: str, version: str, state: dict) -> None:
    def run() -> None:
        try:
            with collector_paused():
                result = snapshots.compute_and_keep(db, version, lambda: _compute_analysis(db))
            state["current"] = (version, result)
        except Exception as exc:  # noqa: BLE001 - the next render tries again (and reports a real error)
            logging.getLogger("harness.dashboard").warning("analysis refresh failed: %s", exc)
        finally:
            state["refreshing"] = None

    with state["lock"]:
        if state["refreshing"] == version:
            return
        state["refreshing"] = version
        threading.Thread(target=run, daemon=True, name="harness-analysis").start()


@st.cache_resource(show_spinner=False)
def _analysis_state(db: str) -> dict:
    """The latest analysis this server holds: (store version, result), and the version being computed."""
    return {"lock": threading.Lock(), "compute": threading.Lock(), "current": None, "refreshing": None}


def flags(db: str) -> list[Flag]:
    return analysed(db)[1]


@per_version
def gaps_of(db: str, models: tuple[str, ...]) -> pd.DataFrame:
    """The twin gaps of these models (the Lineage page's chains) at the store's version: their rows of the
    analysis's gaps, the same figures (each row comes from its own two runs), without the whole analysis of a store
    never analysed."""
    return twin_gaps(_store(db), base(db), models=models)


def coverage(db: str) -> CoverageTable:
    """Every (model, public suite): checked (with the smallest excess it could flag) or why not."""
    return analysed(db)[2]


def flags_frame(db: str) -> pd.DataFrame:
    rows = [{"severity": f.severity, "rank": f.rank, "signal": f.signal, "model": f.model, "suite": f.suite,
             "explanation": f.explanation, "model_id": f.model_id,
             "evidence": f"/lineage?model={f.model_id}&suite={f.suite}"} for f in flags(db)]
    return pd.DataFrame(rows, columns=["severity", "rank", "signal", "model", "suite", "explanation", "model_id",
                                       "evidence"])


def worst_severity(db: str) -> dict[str, str]:
    """model_id -> its most severe non-info flag."""
    out: dict[str, str] = {}
    for f in flags(db):
        if f.severity != "info" and SEVERITIES.index(f.severity) > SEVERITIES.index(out.get(f.model_id, "info")):
            out[f.model_id] = f.severity
    return out


@per_version
def in_sample_table(db: str) -> pd.DataFrame:
    """(model_id, suite, split) rows of every in-sample score (the model or an ancestor was selected there)."""
    return evidence.exposure_frame(base(db))


@per_version
def scores_marked(db: str) -> pd.DataFrame:
    """Suite scores with the model's name, kind, method, depth and an in_sample column."""
    from harness.suites import question_split

    data = base(db)
    marked = in_sample_table(db).assign(in_sample=True).rename(columns={"split": "questions"})
    asked = {sp: question_split(sp) for sp in data.scores["split"].unique()}  # a judge's rating: its split's questions
    sc = data.scores.assign(questions=data.scores["split"].map(asked).astype(object))
    sc = sc.merge(marked, on=["model_id", "suite", "questions"], how="left").drop(columns="questions")
    sc["in_sample"] = sc["in_sample"].fillna(False).astype(bool)
    meta = data.models[["model_id", "name", "kind", "method", "depth"]]
    return sc.merge(meta, on="model_id", how="left")


@per_version
def runs_of(db: str, model_id: str) -> pd.DataFrame:
    return views.runs_of(_store(db), model_id)


@per_version
def run_samples(db: str, run_id: str, task: str | None, wrong_only: bool, limit: int, offset: int) -> pd.DataFrame:
    return views.run_samples(_store(db), run_id, task, wrong_only, limit, offset)


@per_version
def run_tasks_of(db: str, run_id: str) -> list[str]:
    return views.run_tasks_of(_store(db), run_id)


@per_version
def doc_scores(db: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    from harness.suites import score_rules

    return views.doc_scores(_store(db), run_ids, score_rules())  # each task on the metric its suite score reads


@per_version
def search_labels(db: str) -> dict[str, str]:
    """model_id -> hand | PS | DFS | PS+DFS (harness.analysis.search_methods)."""
    from harness.analysis.search_methods import stored_labels

    return stored_labels(_store(db), base(db))  # its lineage graph: no second read of the 20,000 edges


@per_version
def search_comparison(db: str, suite: str, chosen_on: str, compare_on: str) -> pd.DataFrame:
    """Per search method, its pick on `chosen_on` against the best hand recipe's, paired per question."""
    from harness.analysis.search_methods import compare_scores

    labels = search_labels(db)
    sc = scores_marked(db)
    sc = sc[(sc["suite"] == suite) & sc["split"].isin([chosen_on, compare_on]) & sc["model_id"].isin(labels)]
    if sc.empty:
        return pd.DataFrame()
    with _store(db).reading():  # its reads on one connection (each connection opens the file: ~0.02 s)
        return compare_scores(_store(db), base(db), labels, sc, suite, chosen_on, compare_on)  # the picks' items only


@per_version
def evolve_runs(db: str) -> pd.DataFrame:
    return views.evolve_runs(_store(db))


@per_version
def evolve_history(db: str, evolve_id: str) -> pd.DataFrame:
    return views.evolve_history(_store(db), evolve_id)


@per_version
def checks(db: str) -> pd.DataFrame:
    return views.checks(_store(db))


KINDS = ("source", "fine-tune", "merge", "candidate")


def model_kinds(data: evidence.Data) -> pd.Series:
    """Each model's kind as the store knows it: merges and evolve candidates by their kind, a model with parents
    but no merge recipe (a zoo expert, fine-tuned from zoo-base) a fine-tune, anything else a source."""
    models = data.models.set_index("model_id")
    parents = data.graph.parents  # looked up in the dict: Index.isin of 10,000 Arrow strings is ~0.07 s
    has_parents = np.fromiter((m in parents for m in models.index.to_numpy(dtype=object)), bool, len(models))
    kind = np.where(models["kind"].isin(["merge", "candidate"]), models["kind"],
                    np.where(has_parents, "fine-tune", "source"))
    return pd.Series(kind, index=models.index, name="kind")
