"""From (suite, split, tier/limit, task filter) to the lm-eval task configs of one run, checked before any
model loads: unknown suites, splits and tasks get "did you mean", missing data files are named.

A tier run of a twin whose items name their public seeds (a mapped twin, harness/twinmaps.py) evaluates a paired
sample: per task, first the documents whose seed is among the public suite's items at the same tier, then the
task's first other documents, up to the tier's limit (`Plan.samples`, lm-eval's `samples=`). gsm_plus at `quick`
(30 per perturbation type) otherwise shares no seed with gsm8k's first 100 items; now 16 per type pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, did_you_mean
from harness.suite_schema import HUB_SPLIT

if TYPE_CHECKING:
    from harness.suites import Suite


@dataclass(frozen=True)
class Plan:
    suite: Suite
    split: str
    tasks: tuple[str, ...]
    limit: int | None
    data_hash: str | None
    samples: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # task -> doc ids (a paired tier sample)


def load_suite(suite: str | Suite) -> Suite:
    if not isinstance(suite, str):
        return suite
    from harness.suites import load_suite as _load

    return _load(suite)


def _limit(suite: Suite, limit: int | None, tier: str | None) -> int | None:
    if limit is not None and tier is not None:
        raise HarnessError("--limit and --tier both given", "pass one of them")
    if tier is None:
        return limit
    tiers = dict(getattr(suite, "tiers", None) or {})
    if tier not in tiers:
        raise HarnessError(f"suite {suite.name!r} has no tier {tier!r}{did_you_mean(tier, list(tiers))}",
                           f"use one of {', '.join(tiers) or '(none defined)'}")
    return tiers[tier]


def data_files(config: dict[str, Any]) -> list[Path]:
    files = ((config.get("dataset_kwargs") or {}).get("data_files")) or {}
    values = files.values() if isinstance(files, dict) else [files]
    out: list[Path] = []
    for v in values:
        out += [Path(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
    return out


def task_configs(plan: Plan) -> list[dict[str, Any]] | list[str]:
    """The run's configs (a --hub run: lm-eval's task names); HarnessError naming the task and file when a data
    file is missing."""
    if plan.split == HUB_SPLIT:
        return list(plan.tasks)
    configs = [c for c in plan.suite.task_configs(plan.split, plan.tasks) if c.get("task") in plan.tasks]
    for c in configs:
        for f in data_files(c):
            if "://" not in str(f) and not f.exists():
                raise HarnessError(f"task {c['task']!r} of suite {plan.suite.name!r}: data file {f} is missing",
                                   "restore the file (git checkout suites/) or fix data_files in the task YAML")
    return configs


def _some(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")




def make_plan(
    suite: str | Suite, split: str | None = None, limit: int | None = None, tier: str | None = None,
    tasks: list[str] | None = None, hub: bool = False,
) -> Plan:
    if isinstance(suite, str) and ":" in suite:  # 'suite:split', the form twins use
        suite, _, named = suite.partition(":")
        split = split or named
    s = load_suite(suite)
    if getattr(s, "kind", "lm-eval") != "lm-eval":
        raise HarnessError(f"suite {s.name!r} is a {s.kind} suite, not an lm-eval one",
                           "judge suites are scored by the judge runner, not by harness eval")
    if hub:
        return _hub_plan(s, split, limit, tier, tasks)
    split = split or s.default_split
    if split not in s.splits:
        raise HarnessError(f"suite {s.name!r} has no split {split!r}{did_you_mean(split, list(s.splits))}",
                           f"use one of {', '.join(s.splits)}")
    available = list(s.splits[split])
    chosen = available
    if tasks:
        unknown = [t for t in tasks if t not in available]
        if unknown:
            t = unknown[0]
            raise HarnessError(f"suite {s.name!r} split {split!r} has no task {t!r}{did_you_mean(t, available)}",
                               f"use some of {_some(available)}")
        chosen = [t for t in available if t in tasks]
    try:
        data_hash = s.data_hash(split)  # a user-supplied file the split reads is not at hand: one line, here
    except OSError:
        data_hash = None  # a missing file: task_configs() names it once the run is recorded
    limit = _limit(s, limit, tier)
    samples = paired_sample(s, split, tier, chosen) if tier is not None and limit is not None else None
    return Plan(s, split, tuple(chosen), limit, data_hash, samples)


def paired_sample(s: Suite, split: str, tier: str, tasks: Sequence[str],
                  ) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """The documents a tier run of these tasks evaluates when it is a mapped twin of another suite (module doc);
    None when that is the first `limit` of every task (no map covers it, or the paired items come first anyway)."""
    from harness.suites import suite_files, suite_specs

    ctx = _Specs(suite_specs(), {n: f.parent for n, f in suite_files().items()}, tier)
    picked = {t: docs for t in tasks if (docs := ctx.tier_docs(s.name, split, t, frozenset())) is not None}
    limit = s.tiers.get(tier)
    if not picked or limit is None or all(docs == tuple(range(len(docs))) for docs in picked.values()):
        return None
    return tuple((t, picked.get(t, tuple(range(limit)))) for t in tasks)


@dataclass(frozen=True)
class _Specs:
    specs: dict[str, Any]   # suite -> SuiteSpec
    folders: dict[str, Path]
    tier: str

    def tier_docs(self, suite: str, split: str, task: str, seen: frozenset) -> tuple[int, ...] | None:
        """Sorted doc ids of `task` at the tier when a twin map names its seeds; None: the first `limit`."""
        from harness.twinmaps import load_map

        me = self.specs.get(suite)
        limit = me.tiers.get(self.tier) if me else None
        if me is None or limit is None or (suite, task) in seen:
            return None
        for public, spec in sorted(self.specs.items()):
            for kind, twin in sorted(spec.twins.items()):
                ref, _, ref_split = twin.ref.partition(":")
                if ref != suite or (ref_split or me.default_split) != split or not twin.map or twin.tasks:
                    continue
                tm = load_map(self.folders[public] / twin.map, public, kind, twin)
                rows = tm.pairs[tm.pairs["twin_task"] == task]
                if rows.empty or tm.twin_sizes.get(task, 0) <= limit:
                    continue
                public_docs = {(pt, d) for pt in set(rows["public_task"])
                               for d in self.public_docs(public, spec.default_split, pt, seen | {(suite, task)})}
                paired = sorted({int(d) for d, pt, sd in zip(rows["twin_doc"], rows["public_task"],
                                                             rows["public_doc"], strict=True)
                                 if (pt, int(sd)) in public_docs})
                taken = set(paired)
                rest = [d for d in range(tm.twin_sizes[task]) if d not in taken]
                return tuple(sorted((paired + rest)[:limit]))
        return None

    def public_docs(self, suite: str, split: str, task: str, seen: frozenset) -> tuple[int, ...] | range:
        """The doc ids a tier run of a public task evaluates (itself perhaps a paired sample of another twin)."""
        docs = self.tier_docs(suite, split, task, seen)
        if docs is not None:
            return docs
        limit = self.specs[suite].tiers.get(self.tier)
        return range(limit) if limit is not None else range(10**7)


def _hub_plan(s: Suite, split: str | None, limit: int | None, tier: str | None,
              tasks: list[str] | None) -> Plan:
    """lm-eval's own built-in tasks for this benchmark (suite.yaml `hub_tasks`), read from the Hugging Face hub."""
    hub_tasks = tuple(getattr(s, "hub_tasks", ()) or ())
    if not hub_tasks:
        raise HarnessError(f"suite {s.name!r} names no lm-eval built-in tasks (hub_tasks in its suite.yaml)",
                           "run it without --hub (its shipped data), or add hub_tasks: to the suite.yaml")
    if split not in (None, HUB_SPLIT) or tasks:
        raise HarnessError("--hub runs the suite's hub_tasks as lm-eval defines them: --split and --tasks don't apply",
                           f"drop --split/--tasks (hub tasks of {s.name}: {', '.join(hub_tasks)})")
    return Plan(s, HUB_SPLIT, hub_tasks, _limit(s, limit, tier), None)
