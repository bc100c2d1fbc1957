"""`harness evolve`: a search (harness.evolve.loop) and its end: the best candidate materialised, evaluated through
the evaluation runner (so its scores land in the store like any run), and a selection row saying it was chosen on
the fitness suites' search split (and, with `finalists:`, a second one on the split that decided among the
fittest few).

    from harness.workflows.evolve import run_evolve
    result = run_evolve("examples/evolve_zoo.yaml")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.evolve.config import EvolveConfig, load_config
from harness.evolve.loop import EvolveResult, GenerationReport, Search, folder_of
from harness.store import evolve as records

if TYPE_CHECKING:
    from harness.store import Store


def run_evolve(config: str | Path | EvolveConfig, resume: bool = False, store: Store | None = None,
               on_generation: Callable[[GenerationReport], None] | None = None, base_dir: Path | None = None,
               stop_after: int | None = None) -> EvolveResult:
    """Run (or resume) the evolution a config describes, finish it when its budget is spent; returns its summary."""
    from harness.store import Store

    if isinstance(config, EvolveConfig):
        cfg, folder = config, base_dir or Path.cwd()
    else:
        cfg, folder = load_config(config)
    store = store or Store()
    store.init()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if cfg.ps_dfs:
        return run_ps_dfs(cfg, folder, store, resume, on_generation, stop_after)
    search = Search(cfg, folder, store)
    out = search.run(resume=resume, on_generation=on_generation, stop_after=stop_after)
    if out.status == "searched":
        return finish(search, out.generation, out.wall_s)
    return summary(search, out.generation, out.wall_s, status="running" if out.status == "running" else None)


def run_ps_dfs(cfg: EvolveConfig, folder: Path, store: Store, resume: bool,
               on_generation: Callable[[GenerationReport], None] | None, stop_after: int | None) -> EvolveResult:
    """PS+DFS (the paper's hybrid): the parameter-space search first (the same run a config without `dfs:` gives),
    then a layer path over its materialised best merge and the sources, which starts from the PS merge's own
    layers. Each stage is its own evolve run with its own selection; the result is the DFS stage's."""
    ps = run_evolve(cfg.model_copy(update={"dfs": None}), resume, store, on_generation, folder, stop_after)
    if ps.status != "complete" or not ps.path:
        return ps
    sources = [ps.path, *(folder_of(s, folder, store) for s in cfg.sources)]
    data = {**cfg.model_dump(mode="json"), "method": "dfs", "base": None, "parameters": {}, "sources": sources,
            "starts": []}
    dfs = run_evolve(EvolveConfig.model_validate(data), resume, store, on_generation, folder, stop_after)
    dfs.stages = [ps.evolve_id, dfs.evolve_id]
    return dfs


def finish(search: Search, generation: int, wall_s: float) -> EvolveResult:
    """Materialise and evaluate the best candidate, and mark the run complete."""
    store, evolve_id = search.store, search.evolve_id
    best = records.pick(records.candidates(store, evolve_id), *finalists_of(search.cfg))
    if best is None:
        records.finish_run(store, evolve_id, "failed")
        raise HarnessError(f"evolve run {evolve_id}: every candidate failed to merge",
                           "narrow the parameter bounds (weights that cancel out give NaN merges)")
    recipe = {**search.space.recipe(best.params["x"]), "name": pick_name(store, evolve_id, best.model_id)}
    evaluate_best(search, recipe, best)
    records.finish_run(store, evolve_id, "complete", best.model_id)
    return summary(search, generation, wall_s)


def summary(search: Search, generation: int, wall_s: float, status: str | None = None) -> EvolveResult:
    store, evolve_id = search.store, search.evolve_id
    cands = records.candidates(store, evolve_id)
    best = records.pick(cands, *finalists_of(search.cfg))
    run = records.get_run(store, evolve_id)
    model = store.find_model(best.model_id) if best else None
    return EvolveResult(
        evolve_id, status or (run.status if run else "running"), generation, len(cands),
        best.model_id if best else None, best.fitness if best else None,
        best.params.get("values", {}) if best else {}, model.path if model else None, wall_s,
        final_runs(store, best.model_id) if best and (status or (run and run.status)) == "complete" else [],
        records.history(store, evolve_id),
    )


def finalists_of(cfg: EvolveConfig) -> tuple[str | None, int | None]:
    """(split, count) of the declared finalists, (None, None) without."""
    return (cfg.finalists.split, cfg.finalists.count) if cfg.finalists else (None, None)


def pick_name(store: Store, evolve_id: str, model_id: str) -> str:
    """The pick's name: `evolve-<id>`, or, when a run extended with a larger budget picks another model than the one
    that holds it (the first pick keeps its name, folder and selections), `evolve-<id>-<model id>`."""
    name = f"evolve-{evolve_id[2:10]}"
    holder = store.name_holder(name)
    return name if holder in (None, model_id) else f"{name}-{model_id[:8]}"


def evaluate_best(search: Search, recipe: dict[str, Any], best: records.Candidate) -> str:
    """Materialise the best candidate and evaluate it; returns its folder."""
    from harness.evaluate.options import evolve_eval_options
    from harness.evaluate.runner import evaluate_model
    from harness.evolve.fitness import load_suite, selected
    from harness.merge import merge_to_folder

    cfg, store = search.cfg, search.store
    res = merge_to_folder(recipe, seed=cfg.seed, store=store)
    if res.model_id != best.model_id:
        raise HarnessError(f"the materialised best candidate has id {res.model_id}, not {best.model_id}",
                           "report this as a bug (in-memory and folder merges disagree)")
    root = Path(search.suites_root) if search.suites_root else None
    opts = evolve_eval_options(cfg)
    fin = cfg.finalists
    for fs in cfg.fitness:
        suite = load_suite(fs.suite, root)

        def on(split: str, limit: int | None = None, suite: Any = suite, fs: Any = fs) -> None:
            tasks = tuple(t for t in suite.splits[split] if selected(t, split, fs.tasks))
            evaluate_model(res.model_id, suite, opts, store, split=split, limit=limit, tasks=tasks)

        on(cfg.heldout_split)
        on(cfg.search_split, cfg.limit)
        records.add_selection(store, res.model_id, fs.suite, cfg.search_split, search.evolve_id)
        if fin is not None:  # the second, declared selection: that split is in-sample for the pick too
            if fin.split != cfg.heldout_split:
                on(fin.split)
            records.add_selection(store, res.model_id, fs.suite, fin.split, search.evolve_id,
                                  note=f"best on {fin.split} of the {fin.count} fittest candidates of evolve run "
                                       f"{search.evolve_id}")
    for ref in cfg.report_suites:
        name, _, split = ref.partition(":")
        evaluate_model(res.model_id, load_suite(name, root), opts, store, split=split or None)
    return str(res.path)


def final_runs(store: Store, model_id: str) -> list[dict[str, Any]]:
    """Every complete evaluation run of the model: suite, split and its scores with intervals."""
    out = []
    for run in store.list_runs(model_id=model_id):
        scores = [{"task": s.task, "metric": s.metric, "value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high,
                   "n": s.n} for s in store.scores(run.run_id)]
        out.append({"run_id": run.run_id, "suite": run.suite, "split": run.split, "scores": scores,
                    "limit": run.settings.get("limit")})
    return out
