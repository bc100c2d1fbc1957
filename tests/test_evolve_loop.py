"""Evolve end to end on tiny real Llamas and a tiny local suite (hf engine, lm-eval, mergekit, the store): records,
lineage, materialisation and selection, the cache, resume after a kill, and the over-search positive case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.store import evolve as records
from harness.workflows.evolve import run_evolve
from tests.test_evolve_support import make_config, make_models, make_suite

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    make_suite(tmp_path / "suites")
    base, sources = make_models(tmp_path / "models")
    return tmp_path, base, sources


def write(tmp: Path, cfg: dict, name: str = "evolve.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_candidates_recorded_best_materialised_and_selected(setup, store) -> None:
    tmp, base, sources = setup
    reports = []
    res = run_evolve(write(tmp, make_config(tmp, base, sources)), store=store, on_generation=reports.append)
    assert res.status == "complete" and res.generations == 2 and res.evaluations == 8
    assert [r.generation for r in reports] == [1, 2] and reports[0].heldout is not None
    run = records.get_run(store, res.evolve_id)
    assert run is not None and run.status == "complete" and run.generation == 2 and run.optimizer_state
    assert run.best_model_id == res.best_model_id
    cands = records.candidates(store, res.evolve_id)
    assert len(cands) == 8 and all(c.fitness is not None for c in cands)
    assert res.best_fitness == max(c.fitness for c in cands)
    for c in cands:
        model = store.get_model(c.model_id)
        if c.model_id == res.best_model_id:
            assert model.kind == "merge" and model.materialized and Path(model.path).is_dir()
        else:
            assert model.kind == "candidate" and not model.materialized and model.path is None
            assert model.meta["evolve_id"] == res.evolve_id and model.meta["params"] == c.params["values"]
        edges = {e.role: e for e in store.parents(c.model_id) if e.role == "base"}
        assert set(store.parents(c.model_id)[i].parent_id for i in range(3)) == set(
            records.get_run(store, res.evolve_id).config["parents"].values())
        assert "base" in edges
    assert set(c.params["values"]) == {"src0", "src1"}
    assert set(c.params["values"]["src0"]["weight"]) == {"layer0", "layer1", "io"}
    sel = [s for s in store.selections([res.best_model_id]) if s.process == "evolve"]
    assert len(sel) == 1 and (sel[0].suite, sel[0].split, sel[0].process_id) == ("tiny_sum", "search", res.evolve_id)
    runs = {r["split"]: r for r in res.runs}
    assert set(runs) == {"search", "heldout"}
    search_acc = next(s["value"] for s in runs["search"]["scores"] if s["task"] == "tiny_sum_mc_search")
    assert search_acc == pytest.approx(res.best_fitness)  # the live engine scored what `harness eval` scores
    assert any(s["ci_low"] is not None for s in runs["heldout"]["scores"])
    again = run_evolve(write(tmp, make_config(tmp, base, sources)), store=store)
    assert again.best_model_id == res.best_model_id and len(records.candidates(store, res.evolve_id)) == 8
    assert store.exposure(res.best_model_id)


def test_fitness_is_cached_by_model_id(setup, store) -> None:
    tmp, base, sources = setup
    cfg = make_config(tmp, base, sources, granularity="global", budget={"generations": 1}, check_every=0)
    first = run_evolve(write(tmp, cfg), store=store)
    reports = []
    twin = {**cfg, "layer_groups": 3}  # another run (id) whose candidates are the same models
    second = run_evolve(write(tmp, twin, "twin.yaml"), store=store, on_generation=reports.append)
    assert second.evolve_id != first.evolve_id
    assert reports[0].reused == 4 and reports[0].evaluated == 0
    a = [(c.model_id, c.fitness) for c in records.candidates(store, first.evolve_id)]
    b = [(c.model_id, c.fitness) for c in records.candidates(store, second.evolve_id)]
    assert a == b


def _generation(db: Path, evolve_id: str) -> int:
    from harness.store import Store

    run = records.get_run(Store(db), evolve_id)
    return run.generation if run else 0


def uninterrupted(cfg_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same config run in one go, in a store and results folder of its own: (store, result)."""
    from harness.store import Store

    with monkeypatch.context() as m:
        m.setenv("HARNESS_RESULTS", str(tmp_path / "whole"))
        whole = Store(tmp_path / "whole.duckdb")
        whole.init()
        return whole, run_evolve(cfg_path, store=whole)


def test_resume_after_kill_equals_uninterrupted_run(setup, results, store, tmp_path, monkeypatch) -> None:
    """Kill a real `harness evolve` process mid-search, resume it, and compare with an uninterrupted run."""
    tmp, base, sources = setup
    cfg_path = write(tmp, make_config(tmp, base, sources, budget={"generations": 5}, check_every=2))
    whole, full = uninterrupted(cfg_path, tmp_path, monkeypatch)
    env = {**os.environ, "HARNESS_DB": str(store.path), "HARNESS_RESULTS": str(results)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "evolve", str(cfg_path), "--json"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _generation(store.path, full.evolve_id) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = records.get_run(store, full.evolve_id)
    assert killed is not None and killed.status == "running" and 2 <= killed.generation < 5
    with pytest.raises(Exception, match="pass --resume"):
        run_evolve(cfg_path, store=store)
    resumed = run_evolve(cfg_path, store=store, resume=True)
    assert resumed.best_model_id == full.best_model_id
    assert resumed.best_fitness == full.best_fitness and resumed.best_params == full.best_params
    a = [(c.generation, c.idx, c.model_id, c.fitness, c.params["x"]) for c in records.candidates(whole, full.evolve_id)]
    b = [(c.generation, c.idx, c.model_id, c.fitness, c.params["x"]) for c in records.candidates(store, full.evolve_id)]
    assert a == b and len(a) == 20  # the same points to the last bit


def test_stop_after_k_generations_then_resume(setup, store, tmp_path, monkeypatch) -> None:
    tmp, base, sources = setup
    cfg_path = write(tmp, make_config(tmp, base, sources, budget={"generations": 3}, check_every=0))
    part = run_evolve(cfg_path, store=store, stop_after=1)
    assert part.status == "running" and part.generations == 1
    resumed = run_evolve(cfg_path, store=store, resume=True)
    _, full = uninterrupted(cfg_path, tmp_path, monkeypatch)
    assert (resumed.best_model_id, resumed.best_fitness, resumed.best_params) == (
        full.best_model_id, full.best_fitness, full.best_params)


def test_oversearch_raises_the_search_score_not_the_heldout_one(tmp_path, store) -> None:
    """Random tiny models, 6 search items, many knobs: the search 'improves'; held-out stays at chance."""
    make_suite(tmp_path / "suites", sizes={"search": 6, "heldout": 80})
    base, sources = make_models(tmp_path / "models", n_sources=3)
    cfg = make_config(tmp_path, base, sources, method="dare_ties", granularity="layer",
                      parameters={"weight": {"low": 0.0, "high": 2.0}, "density": {"low": 0.2, "high": 1.0}},
                      population=8, sigma=0.4, budget={"generations": 6}, check_every=0)
    res = run_evolve(write(tmp_path, cfg), store=store)
    hist = records.history(store, res.evolve_id)
    first_mean = hist[0]["mean"]
    heldout = next(s["value"] for r in res.runs if r["split"] == "heldout" for s in r["scores"]
                   if s["task"] == "tiny_sum_mc_heldout")
    assert res.best_fitness >= first_mean + 0.15  # the search split's score rose
    assert res.best_fitness - heldout >= 0.2  # and it did not carry over to held-out items


def test_ray_workers_give_the_serial_result(setup, store, tmp_path, monkeypatch) -> None:
    """Two local Ray actors (one engine each) score the same candidates as one in-process worker."""
    pytest.importorskip("ray")
    tmp, base, sources = setup
    cfg = make_config(tmp, base, sources, budget={"generations": 2}, check_every=0)
    _, serial = uninterrupted(write(tmp, cfg), tmp_path, monkeypatch)
    monkeypatch.setenv("RAY_ADDRESS", "")
    par = run_evolve(write(tmp, {**cfg, "workers": 2}, "ray.yaml"), store=store)
    assert par.evolve_id == serial.evolve_id  # workers are not part of the run's identity
    assert (par.best_model_id, par.best_fitness, par.history) == (serial.best_model_id, serial.best_fitness,
                                                                   serial.history)


def test_nan_merge_is_a_failed_candidate_not_a_poisoned_engine(setup) -> None:
    """Weights that cancel out (linear, normalised, summing to 0) give a non-finite merge: fitness None, and the
    engine still scores the next good candidate exactly as before."""
    from harness.evolve.config import parse_config
    from harness.evolve.parallel import Worker, WorkerSpec

    tmp, base, sources = setup
    cfg = parse_config(make_config(tmp, base, sources))
    worker = Worker(WorkerSpec(cfg.model_dump(mode="json"), str(base), str(tmp / "suites"), True, 100, 1))
    good = {"merge_method": "linear", "dtype": "float32",
            "models": [{"model": str(s), "parameters": {"weight": 0.5}} for s in sources]}
    bad = {**good, "models": [{"model": str(sources[0]), "parameters": {"weight": 1.0}},
                              {"model": str(sources[1]), "parameters": {"weight": -1.0}}]}
    before = worker.evaluate(good)
    failed = worker.evaluate(bad)
    after = worker.evaluate(good)
    assert failed.fitness is None and "NaN" in (failed.error or "")
    assert before.fitness is not None and after.fitness == before.fitness


def test_hand_starts_are_generation_zero_and_the_search_starts_from_the_fittest(setup, store) -> None:
    """`starts`: hand settings scored first (generation 0, recorded candidates that compete for the pick); the
    CMA-ES mean starts at the fittest; each generation reports its best fitness's standard error, which for one
    task of n items scored 0/1 is sqrt(p (1 - p) / (n - 1))."""
    from harness.evolve import optimizer_state
    from harness.evolve.config import parse_config
    from harness.evolve.loop import Search

    tmp, base, sources = setup
    starts = [{str(sources[0]): {"weight": 1.0}, str(sources[1]): {"weight": 0.0}},
              {str(sources[0]): {"weight": 0.0}, str(sources[1]): {"weight": 1.0}}]
    cfg = make_config(tmp, base, sources, granularity="global", starts=starts, check_every=0,
                      budget={"generations": 1})
    path = write(tmp, cfg)
    assert run_evolve(path, store=store, stop_after=0).status == "running"
    run = records.get_run(store, run_evolve(path, store=store, stop_after=0, resume=True).evolve_id)
    zero = records.candidates(store, run.evolve_id)
    assert [c.params["values"]["src0"]["weight"]["all"] for c in zero] == [1.0, 0.0]
    fittest = max(zero, key=lambda c: (c.fitness, -c.idx))
    opt = optimizer_state.load(run.optimizer_state, Search(parse_config(cfg), tmp, store).new_optimizer())
    assert [float(v) for v in opt._mean] == fittest.params["x"]
    reports = []
    res = run_evolve(path, store=store, resume=True, on_generation=reports.append)
    hist = records.history(store, res.evolve_id)
    assert [h["generation"] for h in hist] == [0, 1] and res.evaluations == 2 + 4
    p, n = reports[0].best, 12
    assert reports[0].stderr == pytest.approx((p * (1 - p) / (n - 1)) ** 0.5)
    assert hist[1]["stderr"] == pytest.approx(reports[0].stderr)


def test_declared_finalists_decide_on_their_split_and_are_recorded_as_a_selection(setup, store) -> None:
    """`finalists`: the fittest 3 distinct candidates are scored on the held-out split, the best of them there is
    the pick (materialised, evaluated), and the pick carries two selections: search and held-out."""
    tmp, base, sources = setup
    cfg = make_config(tmp, base, sources, granularity="global", check_every=0, budget={"generations": 2},
                      finalists={"count": 3, "split": "heldout"})
    res = run_evolve(write(tmp, cfg), store=store)
    cands = records.candidates(store, res.evolve_id)
    finalists = {c.model_id: c.params["finalist"] for c in cands if "finalist" in c.params}
    assert set(finalists) == {c.model_id for c in records.top(cands, 3)} and len(finalists) == 3
    assert all(f["split"] == "heldout" and f["fitness"] is not None for f in finalists.values())
    top = records.top(cands, 3)  # fittest first: max() keeps the fitter of a held-out tie, as the pick does
    assert res.best_model_id == max(top, key=lambda c: finalists[c.model_id]["fitness"]).model_id
    assert records.get_run(store, res.evolve_id).best_model_id == res.best_model_id
    sel = sorted(s.split for s in store.selections([res.best_model_id]) if s.process == "evolve")
    assert sel == ["heldout", "search"]
    heldout = next(r for r in res.runs if r["split"] == "heldout")["scores"]
    assert next(s["value"] for s in heldout if s["task"] == "tiny_sum_mc_heldout") == pytest.approx(
        finalists[res.best_model_id]["fitness"])  # the runner's held-out score is what the finalists were scored
    again = run_evolve(write(tmp, cfg), store=store)
    assert again.best_model_id == res.best_model_id


def test_a_finished_run_extended_with_a_larger_budget_picks_among_the_fittest_of_the_whole_run(tmp_path, store) -> None:
    """docs/evolve.md: resume a finished run with a larger budget to search further. The new pick (another model
    than the first) is materialised under a name of its own, the run completes, and with `finalists` the pick is
    the best on their split of the `count` fittest candidates of the whole run: a finalist of the first pass that
    is no longer among them does not compete."""
    make_suite(tmp_path / "suites", sizes={"search": 40, "heldout": 40, "public": 40})
    base, sources = make_models(tmp_path / "models")

    def cfg(gens: int) -> Path:
        return write(tmp_path, make_config(tmp_path, base, sources, budget={"generations": gens}, check_every=0,
                                           population=4, sigma=0.4, finalists={"count": 2, "split": "public"}),
                     f"g{gens}.yaml")

    first = run_evolve(cfg(1), store=store)
    again = run_evolve(cfg(6), store=store, resume=True)
    assert again.evolve_id == first.evolve_id and again.status == "complete" and again.generations == 6
    cands = records.candidates(store, again.evolve_id)
    top2 = records.top(cands, 2)
    public = {c.model_id: c.params["finalist"]["fitness"] for c in top2}  # both scored on public
    assert again.best_model_id == max(top2, key=lambda c: (public[c.model_id], c.fitness)).model_id
    assert again.best_model_id != first.best_model_id  # the case that failed: the pick changed
    run = records.get_run(store, again.evolve_id)
    assert run.status == "complete" and run.best_model_id == again.best_model_id
    model = store.get_model(again.best_model_id)
    assert model.kind == "merge" and Path(model.path).is_dir() and again.path == model.path
    assert store.get_model(first.best_model_id).path != model.path  # the first pick keeps its own folder and name
    notes = [s.note for s in store.selections([again.best_model_id]) if s.split == "public"]
    assert notes and "of the 2 fittest" in notes[0]


def _killed_in(store, cfg_path: Path, method: str, at: int) -> None:
    """Run the search in a forked child that dies (os._exit, as a SIGKILL would leave it) at the `at`-th call of
    Store.`method`."""
    from harness.store import Store

    if os.fork() == 0:
        real, calls = getattr(Store, method), [0]

        def dying(self, *a, **k):
            calls[0] += 1
            if calls[0] == at:
                os._exit(9)
            return real(self, *a, **k)

        setattr(Store, method, dying)
        try:
            run_evolve(cfg_path, store=Store(store.path))
        finally:
            os._exit(0)
    os.wait()


def test_a_kill_while_a_generations_rows_are_written_leaves_no_partial_generation(setup, store) -> None:
    """Killed after 2 of generation 2's 4 candidates were recorded: no generation is shown with fewer candidates
    than the population (--json history, the dashboard's evolve history, the candidates read back)."""
    from harness.store import frames as views

    tmp, base, sources = setup
    cfg_path = write(tmp, make_config(tmp, base, sources, budget={"generations": 3}, check_every=0))
    _killed_in(store, cfg_path, "add_model", 7)  # generation 1's 4 candidates, then 2 of generation 2's
    (evolve_id,) = views.evolve_runs(store)["evolve_id"]
    assert records.get_run(store, evolve_id).status == "running"
    hist = records.history(store, evolve_id)
    assert hist and all(h["candidates"] == 4 for h in hist), [h["candidates"] for h in hist]
    assert set(views.evolve_history(store, evolve_id)["candidates"]) == {4}


def test_candidates_scored_before_a_kill_mid_generation_are_not_scored_again(setup, store, tmp_path,
                                                                            monkeypatch) -> None:
    """A kill (os._exit in a forked child, inside lm-eval) while generation 2's second candidate is scored: on
    resume its first candidate's fitness comes from the cache (3 scored, 1 reused), and the run's candidates and
    per-generation history equal an uninterrupted run's."""
    import lm_eval.evaluator

    tmp, base, sources = setup
    cfg_path = write(tmp, make_config(tmp, base, sources, budget={"generations": 3}, check_every=0))
    whole, full = uninterrupted(cfg_path, tmp_path, monkeypatch)
    if os.fork() == 0:
        real, calls = lm_eval.evaluator.evaluate, [0]

        def dying(*a, **k):
            calls[0] += 1
            if calls[0] == 6:  # generation 1's 4 candidates, generation 2's first, then the kill
                os._exit(9)
            return real(*a, **k)

        lm_eval.evaluator.evaluate = dying
        try:
            run_evolve(cfg_path, store=store)
        finally:
            os._exit(0)
    os.wait()
    assert records.get_run(store, full.evolve_id).generation == 1
    reports = []
    resumed = run_evolve(cfg_path, store=store, resume=True, on_generation=reports.append)
    assert [(r.generation, r.evaluated, r.reused) for r in reports] == [(2, 3, 1), (3, 4, 0)]
    a = [(c.generation, c.idx, c.model_id, c.fitness, c.params["x"]) for c in records.candidates(whole, full.evolve_id)]
    b = [(c.generation, c.idx, c.model_id, c.fitness, c.params["x"]) for c in records.candidates(store, full.evolve_id)]
    assert a == b and len(a) == 12
    assert resumed.history == full.history  # the stderr of each generation's fittest included


def test_the_search_builds_each_splits_tasks_once_and_scores_as_a_fresh_build(setup, store) -> None:
    """The held-out check's tasks (search and held-out splits) are the ones the local worker scores with: built once
    per search, not once for the check and again for the worker; a candidate's fitness on each split equals that of
    tasks built afresh for it, scored on the same engine."""
    from harness.evolve.config import parse_config
    from harness.evolve.fitness import SplitTasks
    from harness.evolve.loop import Search

    tmp, base, sources = setup
    cfg = parse_config(make_config(tmp, base, sources, heldout_limit=5, limit=7))
    search = Search(cfg, tmp, store)
    pool = search.open_pool()
    try:
        recipe = search.space.recipe(search.space.start())
        for split, limit in (("search", 7), ("heldout", 5)):
            out = pool.map([recipe], split=split)[0]
            assert pool.worker.split_tasks(split) is search.built[split]
            fresh = SplitTasks.build(cfg.fitness, split, tmp / "suites", limit).score(pool.worker.engine.lm)
            assert out.fitness == fresh.fitness and out.stderr == fresh.stderr
    finally:
        pool.close()


def test_a_run_resumed_under_other_engine_versions_is_refused(setup, store, monkeypatch) -> None:
    """A run killed, then resumed after an upgrade of transformers (here its reported version), would score its
    next generations under the new engine beside the fitnesses of the old one in one search (and pick among them):
    the resume is refused in one line naming both versions, before anything is scored; under the versions it
    started with, it resumes."""
    import importlib.metadata

    from harness.errors import HarnessError

    tmp, base, sources = setup
    cfg_path = write(tmp, make_config(tmp, base, sources, budget={"generations": 2}, check_every=0))
    part = run_evolve(cfg_path, store=store, stop_after=1)
    assert part.status == "running" and len(records.candidates(store, part.evolve_id)) == 4
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "9.9.9" if d == "transformers" else real(d))
    with pytest.raises(HarnessError) as err:
        run_evolve(cfg_path, store=store, resume=True)
    line = err.value.line()
    assert f"(transformers {real('transformers')} -> 9.9.9)" in line and "torch" not in line and "\n" not in line
    run = records.get_run(store, part.evolve_id)
    assert run.generation == 1 and len(records.candidates(store, part.evolve_id)) == 4
    monkeypatch.setattr(importlib.metadata, "version", real)
    done = run_evolve(cfg_path, store=store, resume=True)
    assert done.status == "complete" and done.generations == 2 and done.evaluations == 8


def test_a_heldout_split_named_search_is_scored_on_its_own_documents(setup) -> None:
    """The worker kept the search split's tasks under the literal key "search": with search_split public and a
    held-out split that is itself named "search", every held-out score was the public split's (an in-sample
    held-out check, silently). Each split must be scored on its own documents: compared with a fresh build."""
    from harness.evolve.config import parse_config
    from harness.evolve.fitness import SplitTasks
    from harness.evolve.parallel import Worker, WorkerSpec

    tmp, base, sources = setup
    cfg = parse_config(make_config(tmp, base, sources, search_split="public", heldout_split="search"))
    worker = Worker(WorkerSpec(cfg.model_dump(mode="json"), str(base), str(tmp / "suites"), True, 100, 1))
    recipe = {"merge_method": "linear", "dtype": "float32",
              "models": [{"model": str(s), "parameters": {"weight": 0.5}} for s in sources]}
    on_search, on_public = worker.evaluate(recipe, "search"), worker.evaluate(recipe)
    fresh = {split: SplitTasks.build(cfg.fitness, split, tmp / "suites", None).score(worker.engine.lm).per_task
             for split in ("search", "public")}
    assert set(on_search.per_suite) == {"tiny_sum"} and on_search.stderr is not None
    assert worker.split_tasks("search").score(worker.engine.lm).per_task == fresh["search"]
    assert worker.split_tasks("public").score(worker.engine.lm).per_task == fresh["public"]
    assert list(fresh["search"]) == ["tiny_sum_mc_search"] and list(fresh["public"]) == ["tiny_sum_mc_public"]
    assert on_search.fitness == fresh["search"]["tiny_sum_mc_search"]
    assert on_public.fitness == fresh["public"]["tiny_sum_mc_public"]
