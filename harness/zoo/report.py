"""The zoo's score table: every zoo model (and two labelled reference merges) x every zoo suite split, by lm-eval.

Scores come from lm-eval itself (`simple_evaluate` with its HF backend) on the suites' task YAMLs; nothing here
scores anything. The reference merges are plain task arithmetic on state dicts, made here only so the table
shows the zoo's multi-task and cross-skill effects; the product's merges go through `harness merge` (mergekit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import atomic_dir
from harness.errors import HarnessError

ZOO_SUITE_NAMES = ("zoo_math", "zoo_lang", "zoo_logic", "zoo_math_L")
REPORT_SPLITS = ("public", "heldout", "twin")
# Task arithmetic weights per expert (base + sum w * (expert - base)): w = 1, the design's natural choice (the
# deltas touch disjoint rows); the per-seed weights chosen on zoo_math_L:search are in docs/zoo.md.
REFERENCE_MERGES: dict[str, dict[str, float]] = {
    "ref-ta-math+lang": {"zoo-math": 1.0, "zoo-lang": 1.0},
    "ref-ta-math+lang+logic": {"zoo-math": 1.0, "zoo-lang": 1.0, "zoo-logic": 1.0},
}
METRICS = {"mc": ("acc,none", "acc_stderr,none"), "gen": ("exact_match,strip", "exact_match_stderr,strip")}


@dataclass(frozen=True)
class Cell:
    model: str
    suite: str
    split: str
    form: str  # mc | gen
    value: float
    stderr: float
    n: int


def task_arithmetic(base: Path, experts: dict[Path, float], out: Path) -> Path:
    """base + sum_i w_i (expert_i - base) over every tensor, saved as a model folder (tokenizer from base)."""
    import shutil

    from safetensors.torch import load_file, save_file

    merged = load_file(base / "model.safetensors")
    anchor = {k: v.clone() for k, v in merged.items()}
    for folder, w in experts.items():
        for k, v in load_file(folder / "model.safetensors").items():
            merged[k] += w * (v - anchor[k])
    with atomic_dir(out) as tmp:
        shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("README.md", "zoo_recipe.json"), dirs_exist_ok=True)
        save_file(merged, tmp / "model.safetensors", metadata={"format": "pt"})
    return out


def reference_merges(zoo: Path) -> dict[str, Path]:
    """The labelled reference merges, written under <zoo>/_reference/ (rebuilt each time; they are cheap)."""
    return {
        name: task_arithmetic(zoo / "zoo-base", {zoo / m: w for m, w in weights.items()}, zoo / "_reference" / name)
        for name, weights in REFERENCE_MERGES.items()
    }


def evaluate_model(path: Path, name: str, splits: tuple[str, ...], limit: int | None, batch_size: int = 64
                   ) -> list[Cell]:
    """Every zoo suite split for one model, in one lm-eval call."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.suites import load_suite

    configs, where = [], {}
    for suite_name in ZOO_SUITE_NAMES:
        suite = load_suite(suite_name)
        for split in splits:
            for cfg in suite.task_configs(split):
                configs.append(cfg)
                where[cfg["task"]] = (suite_name, split, "mc" if "_mc_" in cfg["task"] else "gen")
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    lm = HFLM(pretrained=str(path), device="cpu", batch_size=batch_size, dtype="float32")
    out = lm_eval.simple_evaluate(model=lm, tasks=configs, task_manager=TaskManager(include_defaults=False),
                                  limit=limit, bootstrap_iters=1000, log_samples=False, verbosity="WARNING")
    cells = []
    for task, res in out["results"].items():
        suite_name, split, form = where[task]
        value_key, se_key = METRICS[form]
        n = out["n-samples"][task]["effective"]
        cells.append(Cell(name, suite_name, split, form, float(res[value_key]), float(res[se_key]), int(n)))
    return cells


def zoo_models(zoo: Path) -> dict[str, Path]:
    from harness.zoo.family import FAMILY

    missing = [m.name for m in FAMILY if not (zoo / m.name / "model.safetensors").exists()]
    if missing:
        raise HarnessError(f"the zoo at {zoo} lacks {', '.join(missing)}", "run `harness zoo build` first")
    return {m.name: zoo / m.name for m in FAMILY}


def score_table(zoo: Path, limit: int | None = None, with_merges: bool = True,
                splits: tuple[str, ...] = REPORT_SPLITS) -> list[Cell]:
    """Cells for every zoo model (and the reference merges) on every zoo suite split and form."""
    models = zoo_models(zoo)
    if with_merges:
        models |= reference_merges(zoo)
    cells: list[Cell] = []
    for name, path in models.items():
        cells += evaluate_model(path, name, splits, limit)
    return cells


def table_rows(cells: list[Cell], form: str) -> tuple[list[str], list[list[str]]]:
    """One row per model, one column per suite:split, cells 'value +- stderr' in percent."""
    chosen = [c for c in cells if c.form == form]
    columns = list(dict.fromkeys(f"{c.suite}:{c.split}" for c in chosen))
    by_model: dict[str, dict[str, str]] = {}
    for c in chosen:
        by_model.setdefault(c.model, {})[f"{c.suite}:{c.split}"] = f"{100 * c.value:.1f}+-{100 * c.stderr:.1f}"
    rows = [[model, *(vals.get(col, "") for col in columns)] for model, vals in by_model.items()]
    return ["model", *columns], rows
