"""Benchmark suites: discovery, validation and lm-eval task configs (see docs/suites.md).

A suite is a folder under `suites/` with a `suite.yaml` (safe-loaded, validated here) and ordinary lm-eval task
YAMLs. `load_suite(name)` reads and checks the suite.yaml and indexes the task YAMLs of its folder without importing
lm-eval (harness/task_yaml.py reads them); `Suite.task_configs(split)` then loads the task YAMLs with lm-eval's own
loader (`lm_eval.tasks._yaml_loader.load_yaml`: `include:` merged, `!function` resolved to callables; lm-eval 0.4.13
has no public `load_yaml_config` any more) and makes every `dataset_kwargs.data_files` path absolute (relative to the
suite folder), so the dicts work from any working directory without a hub.

How the dicts reach lm-eval 0.4.13 (checked offline in tests/test_suites.py):

    from lm_eval.tasks import TaskManager
    tm = TaskManager(include_defaults=False)        # skip indexing lm-eval's ~10k built-in YAMLs
    lm_eval.simple_evaluate(model=..., tasks=suite.task_configs(split), task_manager=tm,
                            limit=suite.tier_limit("smoke"))
    tm.load(configs)["tasks"]                        # {task name: ConfigurableTask}, what simple_evaluate does

An inline dict with a `task` key becomes a `ConfigurableTask` (TaskManager._load_spec -> TaskIndex.entry_from_config).
Importing this module imports neither lm-eval nor torch.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError, did_you_mean
from harness.paths import suite_roots
from harness.store.records import ScoreRule
from harness.suite_data import absolute_data_files, data_file_names, user_file
from harness.suite_schema import AggregateSpec, SuiteSpec, TwinSpec, UserDataSpec, parse_suite_yaml
from harness.task_yaml import definition_files, read_yaml, upstream_include

SUITE_FILE = "suite.yaml"
TIERS = ("smoke", "quick", "full")
DEFAULT_TIERS: dict[str, int | None] = {"smoke": 20, "quick": 100, "full": None}


@dataclass(frozen=True)
class Suite:
    """One validated suite: what suite.yaml says plus where its task YAMLs are."""

    name: str
    version: str
    kind: str
    description: str
    path: Path
    splits: dict[str, tuple[str, ...]]
    default_split: str
    tiers: dict[str, int | None]
    twins: dict[str, TwinSpec]
    hub_tasks: tuple[str, ...] = ()
    aggregate: AggregateSpec = field(default_factory=AggregateSpec)
    task_files: dict[str, Path] = field(default_factory=dict, repr=False)
    user_data: dict[str, UserDataSpec] = field(default_factory=dict)  # data files the user supplies (suite_data)

    # ------------------------------------------------------------------ splits and tasks
    def split_tasks(self, split: str | None = None) -> tuple[str, ...]:
        """Task names of a split (the default split when None)."""
        split = split or self.default_split
        if split not in self.splits:
            raise HarnessError(
                f"suite {self.name!r} has no split {split!r}{did_you_mean(split, list(self.splits))}",
                f"use one of: {', '.join(self.splits)}",
            )
        return self.splits[split]

    @property
    def all_tasks(self) -> tuple[str, ...]:
        """Every task of every split, each once, in suite.yaml order."""
        return tuple(dict.fromkeys(t for tasks in self.splits.values() for t in tasks))

    def task_configs(self, split: str | None = None, tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """lm-eval task config dicts for a split (only `tasks` of it, when given): includes merged, !function
        resolved, data paths absolute."""
        if self.kind != "lm-eval":
            raise HarnessError(f"suite {self.name!r} is a {self.kind} suite: it has no lm-eval task configs",
                               "score it with the judge runner")
        from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's loader: !function and include:

        configs = []
        wanted = None if tasks is None else set(tasks)
        for task in self.split_tasks(split):
            if wanted is not None and task not in wanted:
                continue
            path = self.task_files[task]
            local = load_yaml(path, resolve_func=True, recursive=False)
            upstream = upstream_include(local, path)
            if upstream is None:
                cfg = load_yaml(path, resolve_func=True)
            else:  # upstream's task as lm-eval itself loads it, then only our keys (where the data comes from)
                cfg = {**load_yaml(upstream, resolve_func=True), **{k: v for k, v in local.items() if k != "include"}}
            configs.append(absolute_data_files(cfg, self.path, path, self.name, self.user_data))
        return configs

    # ------------------------------------------------------------------ tiers
    def tier_limit(self, tier: str) -> int | None:
        """Per-task document limit of a named tier (None = all documents)."""
        if tier not in self.tiers:
            raise HarnessError(
                f"suite {self.name!r} has no tier {tier!r}{did_you_mean(tier, list(self.tiers))}",
                f"use one of: {', '.join(self.tiers)}",
            )
        return self.tiers[tier]

    # ------------------------------------------------------------------ provenance
    def data_files(self) -> list[Path]:
        """Every shipped data file the suite's tasks read (sorted, absolute); for judge suites every file under
        data/. User-supplied files are not in it (see data_hash)."""
        if self.kind != "lm-eval":
            return sorted(p for p in (self.path / "data").rglob("*") if p.is_file())
        files: set[Path] = set()
        for task in self.all_tasks:
            cfg = read_yaml(self.task_files[task])
            files.update(_data_file_paths(cfg, self.path, self.task_files[task], self.user_data))
        return sorted(files)

    def user_files(self, split: str | None = None) -> dict[str, Path]:
        """Name -> where it is, for the user-supplied files a split's tasks read (HarnessError when one is not at
        hand); none for a split that reads none."""
        names = {n for t in self.split_tasks(split) if self.kind == "lm-eval"
                 for n in data_file_names(read_yaml(self.task_files[t]), self.task_files[t])}
        return {n: user_file(self.name, self.path, n, spec) for n, spec in self.user_data.items() if n in names}

    def definition_hash(self, tasks: Sequence[str]) -> str:
        """sha256 over the bytes of every file that defines these tasks (each task YAML, the files it includes, an
        `lm_eval:` one from the installed lm-eval, and the Python modules beside each): an edited prompt, few-shot
        count or generation setting, or an lm-eval upgrade that changes an included task, is another run."""
        h = hashlib.sha256()
        for task in tasks:
            h.update(task.encode() + b"\0")
            for path in dict.fromkeys(definition_files(self.task_files[task])):
                h.update(path.read_bytes() + b"\0")
        return h.hexdigest()

    def data_hash(self, split: str | None = None) -> str:
        """sha256 over the relative names and bytes of the suite's shipped data files, plus the user-supplied files
        `split` reads when one is named (hashed once per process while sizes and mtimes stay the same)."""
        named = [(p.relative_to(self.path).as_posix(), p) for p in self.data_files()]
        named += sorted(self.user_files(split).items()) if split is not None else []
        return _hash_files(tuple((n, str(p), p.stat().st_size, p.stat().st_mtime_ns) for n, p in named))


@functools.lru_cache(maxsize=256)
def _hash_files(files: tuple[tuple[str, str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, path, _size, _mtime in files:
        h.update(rel.encode() + b"\0")
        h.update(Path(path).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------- discovery
def _suite_files(root: Path | None = None) -> dict[str, Path]:
    """Suite name -> suite.yaml path for every suite.yaml under the suites folders (recursively)."""
    roots = [Path(root)] if root else suite_roots()
    found: dict[str, Path] = {}
    for path in [p for r in roots for p in sorted(r.rglob(SUITE_FILE))]:
        spec = _parse(path)
        if spec.name in found:
            raise HarnessError(
                f"two suites are named {spec.name!r}: {found[spec.name]} and {path}",
                "rename one of them (suite names are unique)",
            )
        found[spec.name] = path
    return found


def suite_files(root: Path | None = None) -> dict[str, Path]:
    """Suite name -> its suite.yaml."""
    return _suite_files(root)


def suite_specs(root: Path | None = None) -> dict[str, SuiteSpec]:
    """Name -> what each suite.yaml says (name, kind, splits, default split, twins...), without reading task YAMLs
    or data files: quick enough for the analysis to ask on every call."""
    return {name: _parse(path) for name, path in _suite_files(root).items()}


def list_suites(root: Path | None = None) -> list[str]:
    """Names of all suites, sorted."""
    return sorted(_suite_files(root))


def unknown_suite(name: str, known: list[str]) -> HarnessError:
    """The one-line error for a suite name that is not among `known` (with did-you-mean)."""
    return HarnessError(f"unknown suite {name!r}{did_you_mean(name, known)}",
                        f"use one of: {', '.join(sorted(known))}" if known else
                        "no suite.yaml found under the suites folder")


def load_suite(name: str, root: Path | None = None) -> Suite:
    """Load and validate one suite by name (also accepts 'name:split' and checks the split)."""
    name, _, split = name.partition(":")
    files = _suite_files(root)
    if name not in files:
        raise unknown_suite(name, list(files))
    suite = _build(files[name])
    if split:
        suite.split_tasks(split)
    return suite


def resolve_ref(ref: str, root: Path | None = None) -> tuple[Suite, str]:
    """'suite' or 'suite:split' (the form twins use) -> (Suite, split name)."""
    suite = load_suite(ref, root)
    split = ref.partition(":")[2] or suite.default_split
    return suite, split


def tier_limit(tier: str, suite: Suite | str | None = None) -> int | None:
    """Per-task --limit of a tier: the suite's own tiers when given, else the defaults (smoke/quick/full)."""
    if suite is not None:
        return (load_suite(suite) if isinstance(suite, str) else suite).tier_limit(tier)
    if tier not in DEFAULT_TIERS:
        raise HarnessError(f"unknown tier {tier!r}{did_you_mean(tier, TIERS)}", f"use one of: {', '.join(TIERS)}")
    return DEFAULT_TIERS[tier]


JUDGE_SUMMARY_TASK = "overall"
JUDGED_BY = "-by-"  # a judge run's split is SPLIT[-vs-BASELINE]-by-JUDGE (harness.evaluate.judge.pipeline.judged_split)


def rated_on(split: str, default: str) -> bool:
    """Whether a run's split holds scores of the suite's default split: it, or its judge-rated form `DEFAULT-by-J`
    (a rating by each judge is a column of its own; a pairwise run's `-vs-BASELINE` split is not)."""
    return split == default or split.startswith(default + JUDGED_BY)


def question_split(split: str) -> str:
    """The split whose questions a run answered: SPLIT for a judge run's `SPLIT[-vs-BASELINE]-by-JUDGE` (a model
    selected on SPLIT is in-sample in every judge's rating of it), the split itself otherwise."""
    return split.split(JUDGED_BY, 1)[0].split("-vs-", 1)[0] if JUDGED_BY in split else split


def readable_specs(root: Path | None = None) -> dict[str, tuple[Path, SuiteSpec]]:
    """Suite name -> (its suite.yaml, what it says) for every suite.yaml that parses, the first of a name: a broken
    one is skipped, for readers that must not stop at another suite's problem (scores, the gate's questions)."""
    roots = [Path(root)] if root else suite_roots()
    found: dict[str, tuple[Path, SuiteSpec]] = {}
    for path in [p for r in roots for p in sorted(r.rglob(SUITE_FILE))]:
        try:
            spec = _parse(path)
        except HarnessError:
            continue
        found.setdefault(spec.name, (path, spec))
    return found


def score_rules(root: Path | None = None) -> dict[str, ScoreRule]:
    """Suite name -> ScoreRule from every readable suite.yaml (a broken one is skipped: it cannot be scored now,
    and the rows it left are read under the default rule)."""
    rules: dict[str, ScoreRule] = {}
    for name, (_, spec) in readable_specs(root).items():
        summary = JUDGE_SUMMARY_TASK if spec.kind == "judge" else None
        agg = spec.aggregate
        rules[name] = ScoreRule(agg.metric, agg.weight_by_size, summary, tuple(sorted(agg.split_metrics.items())),
                                spec.default_split)
    return rules


def _parse(path: Path) -> SuiteSpec:
    return _parse_cached(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _parse_cached(path: Path, _mtime_ns: int) -> SuiteSpec:
    """One suite.yaml parsed once per version of the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise HarnessError(f"{path}:{where} is not valid YAML", "fix the syntax") from None
    return parse_suite_yaml(raw, path)


def _build(path: Path) -> Suite:
    spec = _parse(path)
    folder = path.parent
    task_files = _index_tasks(folder) if spec.kind == "lm-eval" else {}
    for split, tasks in spec.splits.items() if spec.kind == "lm-eval" else ():  # judge runners read their own
        for task in tasks:
            if task not in task_files:
                raise HarnessError(
                    f"{path}: split {split!r} names unknown task {task!r}{did_you_mean(task, list(task_files))}",
                    f"define it in a task YAML under {folder} or fix the name",
                )
    suite = Suite(
        name=spec.name, version=spec.version, kind=spec.kind, description=spec.description, path=folder,
        splits={k: tuple(v) for k, v in spec.splits.items()}, default_split=spec.default_split,
        tiers=dict(spec.tiers), twins=dict(spec.twins), hub_tasks=tuple(spec.hub_tasks), aggregate=spec.aggregate,
        task_files=task_files, user_data=dict(spec.user_data),
    )
    files = {task: sorted(_data_file_paths(read_yaml(task_files[task]), folder, task_files[task],
                                           dict(spec.user_data)))
             for task in (suite.all_tasks if spec.kind == "lm-eval" else ())}
    for task, paths in files.items():  # every data file exists before a run
        for p in paths:
            if not p.is_file():
                raise HarnessError(f"suite {spec.name!r} task {task!r}: data file {p} is missing",
                                   "restore it (see the suite's data/PROVENANCE.md) or fix data_files")
    _check_same_questions(suite, spec.same_questions if spec.kind == "lm-eval" else {}, files, path)
    return suite


def _check_same_questions(suite: Suite, same: dict[str, str], files: dict[str, list[Path]], path: Path) -> None:
    """suite.yaml `same_questions` pairs task i of a split with task i of the split it asks (harness/seed_questions.py
    names the items of one by the questions of the other): where both tasks read data files (`files`, per task),
    the files must be the same, else a reordered list would pose German items as Bengali questions without a word."""
    for split, asked in same.items():
        for task, other in zip(suite.splits[split], suite.splits[asked], strict=True):
            mine, theirs = files[task], files[other]
            if mine and theirs and mine != theirs:
                names = f"{', '.join(p.name for p in mine)} against {', '.join(p.name for p in theirs)}"
                raise HarnessError(f"{path}: same_questions pairs task {task!r} of split {split!r} with {other!r} of "
                                   f"{asked!r}, which read other data ({names})",
                                   "list the two splits' tasks in the same order (task i asks task i's documents)")


# ---------------------------------------------------------------------- a suite folder's task YAMLs
def _index_tasks(folder: Path) -> dict[str, Path]:
    """Task name -> YAML file for the *.yaml files of a suite folder (nested suites excluded)."""
    index: dict[str, Path] = {}
    for p in sorted(folder.rglob("*.yaml")):
        if p.name == SUITE_FILE or _in_nested_suite(p, folder):
            continue
        task = read_yaml(p).get("task")
        if not isinstance(task, str):
            continue  # groups and helper files are not tasks
        if task in index:
            raise HarnessError(f"task {task!r} is defined twice: {index[task]} and {p}", "rename one of them")
        index[task] = p
    return index


def _in_nested_suite(p: Path, folder: Path) -> bool:
    return any((d / SUITE_FILE).is_file() for d in p.parents if d != folder and folder in d.parents)


def _data_file_paths(cfg: dict[str, Any], folder: Path, yaml_path: Path,
                    user_data: dict[str, UserDataSpec] | None = None) -> list[Path]:
    """The shipped data files of a task config (user-supplied ones left out)."""
    return [folder / f for f in data_file_names(cfg, yaml_path) if f not in (user_data or {})]
