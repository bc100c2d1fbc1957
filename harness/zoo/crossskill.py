"""The zoo's cross-skill margin: does a merge of zoo-math and zoo-lang beat both sources on zoo_math_L (math posed
in L, which neither source can do)?

    from harness.zoo.crossskill import cross_skill
    res = cross_skill(Path("results/zoo"), Path("/tmp/merges"))   # CrossSkill

Task arithmetic on state dicts (base + w_math (math - base) + w_lang (lang - base)) over a grid of weights; the
weights are chosen on zoo_math_L:search (generation, then multiple choice) and the chosen merge is compared with each
source on zoo_math_L:heldout, paired per item, with the standard error of the per-item differences (the fast
in-process scorer of `harness zoo compare`). The merges are written under `work`, never into the zoo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.zoo.paired import item_scores, paired_difference
from harness.zoo.report import task_arithmetic

GRID = tuple((wm, wl) for wm in (0.5, 0.7, 1.0) for wl in (0.7, 1.0, 1.3))
SOURCES = ("zoo-math", "zoo-lang")


@dataclass(frozen=True)
class CrossSkill:
    chosen: tuple[float, float]  # (w_math, w_lang)
    heldout: dict[str, dict[str, float]]  # model ("merge", "zoo-math", "zoo-lang") -> form -> percent
    diff: dict[str, dict[str, tuple[float, float]]]  # source -> form -> (merge - source, paired SE), percent


def cross_skill(zoo: Path, work: Path, grid: tuple[tuple[float, float], ...] = GRID) -> CrossSkill:
    merges = {w: task_arithmetic(zoo / "zoo-base", {zoo / "zoo-math": w[0], zoo / "zoo-lang": w[1]},
                                 work / f"ta-{w[0]}-{w[1]}") for w in grid}
    search = {w: item_scores(path, "zoo_math_L", "search") for w, path in merges.items()}
    chosen = max(grid, key=lambda w: (sum(search[w]["gen"]), sum(search[w]["mc"])))
    held = {"merge": item_scores(merges[chosen], "zoo_math_L", "heldout"),
            **{m: item_scores(zoo / m, "zoo_math_L", "heldout") for m in SOURCES}}
    forms = ("gen", "mc")
    return CrossSkill(
        chosen,
        {name: {f: 100 * sum(s[f]) / len(s[f]) for f in forms} for name, s in held.items()},
        {m: {f: paired_difference(held["merge"][f], held[m][f]) for f in forms} for m in SOURCES},
    )
