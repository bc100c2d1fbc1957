"""Fitness by lm-eval itself: the suites' task objects are built once per split, then
`lm_eval.evaluator.evaluate` runs them against the live engine's LM for every candidate.

What does not depend on the candidate is done once per split, not once per candidate: each task's requests (its
few-shot contexts and continuations: `build_all_requests` asked again with the same arguments hands out fresh
copies of the instances it built the first time, answers emptied) and the Jinja templates behind them (compiled
once, harness.evaluate.lm_eval_speed). lm-eval fills each copy's answers and scores it as usual, so the scores
are those of a fresh build (tests/test_evolve.py compares them).

    tasks = SplitTasks.build(cfg.fitness, "search", suites_root, limit=cfg.limit)
    score = tasks.score(engine.lm)       # Score(fitness, per_suite, per_task)

fitness = sum_s w_s * score_s / sum_s w_s, where score_s is suite s's score as its suite.yaml `aggregate` defines
it, the one definition the leaderboard reads (harness/store/frames.py SUITE_SCORES_SQL, lm-eval's group rule): the
size-weighted mean of its tasks' metric (`weight_by_size: true`, the default; sizes = documents evaluated) or their
plain mean (`false`). Each task's metric is the fitness entry's `metric`, else the suite's aggregate metric for the
split, else the task's first metric (acc for multiple choice, exact_match for generation).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, did_you_mean
from harness.evolve.config import EvolveConfig, FitnessSuite

if TYPE_CHECKING:
    from lm_eval.api.model import LM


@dataclass(frozen=True)
class Score:
    fitness: float
    per_suite: dict[str, float]
    per_task: dict[str, float]
    stderr: float | None = None  # of the fitness (SplitTasks.stderr)


def load_suite(name: str, root: Path | None) -> Any:
    """A suite from `root` (a config's suites_dir) if it is there, else from the repository's suites/."""
    from harness.suites import list_suites
    from harness.suites import load_suite as _load

    if root is not None and name.partition(":")[0] in list_suites(root):
        return _load(name, root)
    return _load(name)


def task_metric(config: dict[str, Any], override: str | None) -> str:
    if override:
        return override
    metrics = config.get("metric_list") or [{"metric": "acc"}]
    return str(metrics[0]["metric"])


@dataclass
class SplitTasks:
    """The lm-eval tasks of one split of every fitness suite, with the metric and weight each one counts for."""

    split: str
    task_dict: dict[str, Any]
    members: dict[str, tuple[str, str, float]]  # task -> (suite, metric, suite weight)
    limit: int | None
    by_size: dict[str, bool] = field(default_factory=dict)  # suite -> its aggregate's weight_by_size
    keys: dict[str, list[str]] = field(default_factory=dict)  # task -> its documents' content hashes (doc_keys)
    named: dict[str, list[str]] = field(default_factory=dict)  # task -> the questions its documents pose (item_keys)
    root: Path | None = None  # the suites folder the tasks were read from (its twin maps name the questions)
    entry: dict[str, str] = field(default_factory=dict)  # task -> its fitness entry (entry_name)

    @classmethod
    def build(cls, fitness: tuple[FitnessSuite, ...], split: str, root: Path | None,
              limit: int | None = None) -> SplitTasks:
        from lm_eval.tasks import TaskManager

        configs: list[dict[str, Any]] = []
        members: dict[str, tuple[str, str, float]] = {}
        by_size: dict[str, bool] = {}
        entry: dict[str, str] = {}
        for fs in fitness:
            suite = load_suite(fs.suite, root)
            agg = suite.aggregate
            by_size[fs.suite] = agg.weight_by_size
            if split not in suite.splits:
                hint = did_you_mean(split, list(suite.splits))
                raise HarnessError(f"suite {fs.suite!r} has no split {split!r}{hint}",
                                   f"use one of {', '.join(suite.splits)} in search_split/heldout_split")
            chosen = [c for c in suite.task_configs(split) if selected(c["task"], split, fs.tasks)]
            if not chosen:
                raise HarnessError(f"fitness suite {fs.suite!r}: no task of split {split!r} matches {fs.tasks}",
                                   f"pick tasks from {', '.join(suite.splits[split])}")
            for c in chosen:
                if c["task"] in members:
                    raise HarnessError(f"fitness scores task {c['task']!r} in two entries of suite {fs.suite!r}",
                                       "give each entry of a suite its own `tasks`")
                metric = fs.metric or agg.split_metrics.get(split, agg.metric)
                members[c["task"]] = (fs.suite, task_metric(c, metric), fs.weight)
                entry[c["task"]] = entry_name(fs, fitness)
            configs += chosen
        for name in ("lm-eval", "lm_eval"):
            logging.getLogger(name).setLevel(logging.WARNING)
        task_dict = TaskManager(include_defaults=False).load(configs)
        reuse_requests(task_dict)
        return cls(split, task_dict, members, limit, by_size, root=root, entry=entry)

    def score(self, lm: LM) -> Score:
        import torch
        from lm_eval.evaluator import evaluate

        from harness.evaluate.lm_eval_speed import faster_lm_eval

        with faster_lm_eval(), torch.inference_mode(), per_item_metrics() as items:  # as no_grad, ~5% less
            results = evaluate(lm, self.task_dict, limit=self.limit, bootstrap_iters=0, log_samples=False)
        if results is None:
            raise HarnessError("lm-eval returned no results", "run the search in a single process")
        per_task = {t: metric_value(results["results"].get(t, {}), m, t) for t, (_, m, _) in self.members.items()}
        sizes = results.get("n-samples", {})
        suites: dict[str, list[tuple[float, float]]] = {}
        weights: dict[str, float] = {}
        for t, (s, _, w) in self.members.items():
            n = float(sizes.get(t, {}).get("effective") or 1) if self.by_size.get(s, True) else 1.0
            suites.setdefault(self.entry.get(t, s), []).append((per_task[t], n))
            weights[self.entry.get(t, s)] = w
        per_suite = {s: sum(v * n for v, n in vs) / sum(n for _, n in vs) for s, vs in suites.items()}
        total = sum(weights.values())
        fitness = sum(weights[s] * per_suite[s] for s in per_suite) / total if total else 0.0
        counts = {t: float(sizes.get(t, {}).get("effective") or 1) for t in self.members}
        return Score(fitness, per_suite, per_task, self.stderr(items, self.coefficients(counts)))

    def coefficients(self, sizes: dict[str, float]) -> dict[str, float]:
        """c_t with fitness = sum_t c_t score_t (score's own sum, in another order): the suite's weight share times
        the task's share of its suite, by documents evaluated (a task without any counting 1) or equal."""
        total = sum({self.entry.get(t, s): w for t, (s, _, w) in self.members.items()}.values())
        by_entry: dict[str, list[str]] = {}
        for t, (s, _, _) in self.members.items():
            by_entry.setdefault(self.entry.get(t, s), []).append(t)
        out: dict[str, float] = {}
        for ts in by_entry.values():
            n = {t: sizes[t] if self.by_size.get(self.members[t][0], True) else 1.0 for t in ts}
            for t in ts:
                out[t] = self.members[t][2] / total * n[t] / sum(n.values()) if total else 0.0
        return out

    def stderr(self, items: dict[str, dict[tuple[str, str], list[Any]]], coef: dict[str, float]) -> float | None:
        """The fitness's standard error from lm-eval's per-document values (stats.weighted_means_stderr): a
        question two tasks pose (the same document: zoo_math's multiple choice and generation; an MGSM problem in
        its 11 languages, item_keys) counts once with all its scores. None where a task's metric is not a
        per-document mean or has fewer than 2 documents."""
        from lm_eval.api.metrics import mean

        from harness.stats import weighted_means_stderr

        tasks = {t.config.task: t for t in _tasks_of(self.task_dict.get("tasks", self.task_dict))}
        found = {}
        for name, (_, metric, _) in self.members.items():
            key = raw_key(items.get(name, {}), metric)
            task = tasks.get(name)
            if key is None or task is None or task.aggregation().get(key[0]) is not mean:
                return None
            found[name] = (task, items[name][key])
        keys = self.item_keys({name: (task, len(values)) for name, (task, values) in found.items()})
        se = weighted_means_stderr([(values, keys[name], coef[name]) for name, (_, values) in found.items()])
        return None if se != se else se

    def item_keys(self, wanted: dict[str, tuple[Any, int]], keep: bool = True) -> dict[str, list[str]]:
        """Each task's first n documents named by the question they pose (harness/seed_questions.py, as the gate
        names them): their content hash (doc_keys), or the seed a twin map of the suite's split ties them to (an
        MGSM problem's translations, a GSM8K seed's GSM-Plus rewrites); once per search. `keep=False` names them
        among `wanted` alone (one fitness entry's tasks), without keeping the names stderr reads."""
        if not keep or any(len(self.named.get(name, ())) < n for name, (_, n) in wanted.items()):
            from harness.seed_questions import question_keys

            hashes = {(name, i): h for name, (task, n) in wanted.items()
                      for i, h in enumerate(self.doc_keys(name, task, n))}
            found: dict[str, list[str]] = {}
            for suite in sorted({self.members[name][0] for name in wanted}):
                mine = {k: h for k, h in hashes.items() if self.members[k[0]][0] == suite}
                named = question_keys(suite, self.split, mine, self.root)
                for name in {k[0] for k in mine}:
                    found[name] = [named.get((name, i), hashes[(name, i)]) for i in range(wanted[name][1])]
            if not keep:
                return found
            self.named.update(found)
        return {name: self.named[name][:n] for name, (_, n) in wanted.items()}

    def questions(self, entry: str) -> list[set[str]]:
        """What each scored document (the first `limit` of each task) of a fitness entry (entry_name) asks: its
        question (item_keys, among the entry's tasks) and its content hash (doc_keys), so that a document matches
        another split's by either name."""
        tasks = {t.config.task: t for t in _tasks_of(self.task_dict.get("tasks", self.task_dict))}
        wanted = {name: (task, min(self.limit or len(task.eval_docs), len(task.eval_docs)))
                  for name, task in tasks.items() if name in self.members and self.entry.get(name) == entry}
        named = self.item_keys(wanted, keep=False)
        return [{q, h} for name in wanted for q, h in zip(named[name], self.keys[name], strict=False)]

    def doc_keys(self, name: str, task: Any, n: int) -> list[str]:
        """The first n evaluated documents of a task (lm-eval's order), each named by its content, so that two
        tasks over the same documents name them alike; hashed once per search."""
        known = self.keys.get(name)
        if known is None or len(known) < n:
            from itertools import islice

            from harness.hashing import hash_json

            known = [hash_json(doc) for doc in islice(task.eval_docs, n)]
            self.keys[name] = known
        return known[:n]


def split_tasks_of(cfg: EvolveConfig, root: Path | None) -> dict[str, SplitTasks]:
    """The search and held-out splits' tasks of every fitness entry, built once per search: the held-out check reads
    them, and the search's local worker scores with them."""
    return {cfg.search_split: SplitTasks.build(cfg.fitness, cfg.search_split, root, cfg.limit),
            cfg.heldout_split: SplitTasks.build(cfg.fitness, cfg.heldout_split, root, cfg.heldout_limit)}


def check_heldout_apart(cfg: EvolveConfig, root: Path | None,
                        built: dict[str, SplitTasks] | None = None) -> dict[str, SplitTasks]:
    """Refuse, before the search, a held-out split that asks any question the search split asks (mgsm's direct and
    cot splits pose the same 250 problems): the held-out check is honest only on documents the search never saw.
    Compared per fitness entry over the documents each split scores (limit, heldout_limit). Returns the two splits'
    tasks (`built`: split_tasks_of's, else built here)."""
    built = built if built is not None else split_tasks_of(cfg, root)
    search, heldout = built[cfg.search_split], built[cfg.heldout_split]
    for fs in cfg.fitness:
        name = entry_name(fs, cfg.fitness)
        seen = set().union(*search.questions(name))
        held = heldout.questions(name)
        shared = sum(bool(doc & seen) for doc in held)
        if shared:
            raise HarnessError(f"heldout_split {cfg.heldout_split!r} of suite {fs.suite!r} asks questions the "
                               f"search split {cfg.search_split!r} asks ({shared} of its {len(held)} documents)",
                               "pick a held-out split of other documents (the zoo's: search and heldout)")
    return built


def check_same_fitness(evolve_id: str, stored: dict[str, Any], key: str, engines: str) -> None:
    """Refuse to continue a run (`stored`: its config in the store) whose fitness key has changed since it started:
    its next candidates would be scored under other engines (an lm-eval, transformers, torch or vLLM upgrade), data or
    score rules than its first ones, both picked from in one search and the new ones cached under the old key."""
    if stored.get("fitness_key") in (None, key):
        return
    was = stored.get("engines")
    if was is not None and was != engines:
        old, new = _versions(was), _versions(engines)
        changed = ", ".join(f"{n} {old.get(n, '(none)')} -> {new.get(n, '(none)')}"
                            for n in dict.fromkeys([*old, *new]) if old.get(n) != new.get(n)) or f"{was} -> {engines}"
        raise HarnessError(f"evolve run {evolve_id} was scored under other engine versions than these ({changed})",
                           "resume it under the versions it started with (pip install them), or start another run "
                           "under these (change the config's seed)")
    changed = "its fitness suites' data or aggregate rules" if was else "its fitness (data, score rules or engines)"
    raise HarnessError(f"evolve run {evolve_id}: {changed} changed since it started",
                       "restore what it was scored with to resume it, or start another run (change the config's seed)")


def _versions(engines: str) -> dict[str, str]:
    """'lm_eval 0.4.13; transformers 4.57.1, torch 2.8.0' (run_settings.engine_versions) -> {package: version}."""
    pairs = [p.strip().rpartition(" ") for p in engines.replace(";", ",").split(",")]
    return {name or version: version for name, _, version in pairs}


def entry_name(fs: FitnessSuite, fitness: tuple[FitnessSuite, ...]) -> str:
    """The key of a fitness entry in Score.per_suite: its suite, or suite[tasks] where the suite has several entries
    (the config refuses entries of one suite whose tasks overlap)."""
    if sum(f.suite == fs.suite for f in fitness) == 1:
        return fs.suite
    return f"{fs.suite}[{','.join(fs.tasks or ())}]"


@contextmanager
def per_item_metrics() -> Iterator[dict[str, dict[tuple[str, str], list[Any]]]]:
    """Each task's per-document metric values ((metric, filter) -> values in document order), taken as lm-eval's
    `evaluate` hands them to its aggregation: log_samples would copy and hash every sample (~10% of a zoo
    candidate)."""
    import lm_eval.evaluator as ev

    real, seen = ev._process_results, {}

    def capture(acc: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        seen.update({name: dict(a["raw_metrics"]) for name, a in acc.items()})
        return real(acc, *args, **kwargs)

    ev._process_results = capture
    try:
        yield seen
    finally:
        ev._process_results = real


def raw_key(raw: dict[tuple[str, str], list[Any]], metric: str) -> tuple[str, str] | None:
    """The (metric, filter) of lm-eval's per-document values that metric_value reads ('metric,filter' or a bare
    metric under any filter)."""
    for m, f in raw:
        if f"{m},{f}" == metric or ("," not in metric and m == metric):
            return m, f
    return None


def reuse_requests(task_dict: dict[str, Any]) -> None:
    """Each task's `build_all_requests` builds once per set of arguments, then hands out fresh copies; its
    `doc_iterator` (lm-eval walks the documents again to score each candidate's answers) reads the dataset once."""
    for task in _tasks_of(task_dict.get("tasks", task_dict)):
        task.build_all_requests = _RequestMemo(task)
        task.doc_iterator = _DocMemo(task.doc_iterator)


def _tasks_of(tree: dict[Any, Any]) -> list[Any]:
    """The task objects of lm-eval's task dict (new layout: its "tasks" mapping; old: nested by group)."""
    out: list[Any] = []
    for value in tree.values():
        out += _tasks_of(value) if isinstance(value, dict) else [value] if hasattr(value, "build_all_requests") else []
    return out


class _RequestMemo:
    """A task's `build_all_requests`, remembered per set of arguments (the same LM asks the same each time)."""

    def __init__(self, task: Any) -> None:
        self.task, self.real, self.built = task, task.build_all_requests, {}

    def __call__(self, **kwargs: Any) -> None:
        key = repr(sorted(kwargs.items()))
        if key not in self.built:
            self.real(**kwargs)
            self.built[key] = list(self.task._instances)
        self.task._instances = [_fresh(i) for i in self.built[key]]


def _fresh(instance: Any) -> Any:
    """A copy of a built instance with no answers (what dataclasses.replace gives, without re-running __init__)."""
    new = object.__new__(type(instance))
    new.__dict__.update(instance.__dict__, resps=[], filtered_resps={})
    return new


class _DocMemo:
    """A task's `doc_iterator`, its (index, document) pairs read once per set of arguments; each call gets
    shallow copies of the documents, as a fresh read of the dataset would."""

    def __init__(self, real: Any) -> None:
        self.real, self.read = real, {}

    def __call__(self, **kwargs: Any) -> Any:
        key = repr(sorted(kwargs.items()))
        if key not in self.read:
            self.read[key] = list(self.real(**kwargs))
        return iter([(i, dict(doc) if isinstance(doc, dict) else doc) for i, doc in self.read[key]])


def selected(task: str, split: str, tasks: tuple[str, ...] | None) -> bool:
    """Whether `tasks` (None: all) names this task, in full or without its split suffix (zoo_math_mc)."""
    return tasks is None or task in tasks or task.removesuffix(f"_{split}") in tasks


def metric_value(task_results: dict[str, Any], metric: str, task: str) -> float:
    """The value of `metric` ('metric,filter' as lm-eval reports it; a bare metric: under any filter)."""
    for key, value in task_results.items():
        if key == metric or ("," not in metric and key.partition(",")[0] == metric):
            return float(value)
    have = sorted({k.partition(",")[0] for k in task_results if "," in k and "stderr" not in k})
    raise HarnessError(f"task {task!r} reports no metric {metric!r}{did_you_mean(metric, have)}",
                       f"set fitness[].metric to one of {', '.join(have) or '(none)'}")
