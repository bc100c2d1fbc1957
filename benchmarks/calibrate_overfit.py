"""Calibration benchmark for the overfitting verdicts: false flag rate per signal against its nominal level, and
recall by plant kind and size, over synthetic stores whose natural gaps vary between models as real ones do.

    python benchmarks/calibrate_overfit.py --stores 5 --models 240 --docs 300     # docs/overfitting.md figures

Each store (benchmarks/gen_store.py's Lineage and bulk writer) holds sources of different skill, random merges of
them (merges of merges), clean fine-tunes and a few clean models selected on a public split. Every model has its
own *natural* gap: twin and held-out accuracy = public accuracy - (a model-specific robustness ~ N(0, 3 pts),
inherited by merges as a weighted mean plus noise) - 0.1 x (skill - 0.5) (better models lose more on a harder
twin), so the reference gap varies between models. Planted positives (true public-only lift c, in points):
- `memorised`: a fine-tune of a random model trained on zoo_math's public split (c = 3 .. 20, half declared);
- `diluted`: a fine-tune with c = 20 merged with a clean model at weight 0.25 .. 0.6 (effective c = 5 .. 12);
- `winners_curse`: the best of K candidates picked on the public split, undeclared: the pick's public score is
  inflated by the expected maximum of K sampling errors (K = 10 .. 200; c = se x E[max of K normals]);
- `chain`: a chain of 3 .. 6 merges, each picked on public (declared), each adding 2 pts of public-only lift.
`--natural floor` makes the natural gap what real benchmarks show near chance: zero at chance level and growing with
ability above it, gap = (FLOOR_RHO + 2 x robustness) x max(0, skill - CHANCE) (the zoo's held-out split: -2 to -6 pts
for chance-level models, +10 to +16 for the math expert's capable merges), with `--chance-sources` of the 12 sources
at chance level (0.25): reference pools mostly of chance-level models, whose gaps say little of a capable one's.
Clean = true c below 2 pts (gen_store.NEGATIVE_C). A false flag is a twin_gap or lineage_divergence flag on a
clean (model, suite) checked, or a specialisation flag on a clean selected model; nominal levels: the
Benjamini-Hochberg rate `fdr` for the first two, the one-sided Holm level of `loss_z` for specialisation.
Intervals are Wilson 95%. Zoo-free and quick: a store of 240 models is written and analysed in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import gen_store as gs  # noqa: E402

SIGNALS = ("twin_gap", "lineage_divergence", "specialisation")
TWIN_GAP_SKILL = 0.10  # natural gap grows by this much per unit of skill
CHANCE = 0.25          # --natural floor: the skill of a model that guesses
FLOOR_RHO = 0.25       # --natural floor: natural gap per unit of skill above chance


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def population(seed: int, n_models: int, docs: int, chance_sources: int = 0
               ) -> tuple[gs.Lineage, dict[str, float], dict[str, tuple]]:
    """Clean models and plants; returns the lineage, each model's robustness, and plant name -> (kind, c)."""
    lin = gs.Lineage(seed)
    rng = lin.rng
    for i in range(12):
        level = CHANCE if i < chance_sources else float(rng.uniform(0.3, 0.75) if not chance_sources
                                                           else rng.uniform(0.55, 0.85))
        lin.source(f"source-{i:03d}", level=level)
    gs.random_population(lin, n_models, 0, contaminate=0.0)
    clean = list(lin.models)
    for i in range(10):  # clean fine-tunes, and clean models picked on public (no lift)
        ft = lin.finetune(f"ft-{i}", clean[int(rng.integers(len(clean)))], {}, {"zoo_lang": float(rng.normal(0, .02))})
        if i % 2:
            ft.selections.append(("zoo_math", "public", "user"))
    plants: dict[str, tuple] = {}
    se = math.sqrt(0.25 / docs)
    for i, c in enumerate((0.03, 0.05, 0.08, 0.12, 0.20)):
        m = lin.finetune(f"memorised-{i}", clean[int(rng.integers(len(clean)))], {"zoo_math": c}, {})
        if i % 2:
            m.selections.append(("zoo_math", "public", "train"))
        plants[m.name] = ("memorised", c)
    for i, w in enumerate((0.25, 0.4, 0.6)):
        src = lin.finetune(f"contaminated-{i}", clean[int(rng.integers(len(clean)))], {"zoo_math": 0.20}, {})
        plants[src.name] = ("memorised", 0.20)
        m = lin.merge(f"diluted-{i}", [clean[int(rng.integers(len(clean)))], src.name], "linear", [1 - w, w])
        plants[m.name] = ("diluted", 0.20 * w)
    for i, k in enumerate((10, 50, 200)):
        lift = se * float(np.mean(np.max(rng.normal(size=(2000, k)), axis=1)))
        m = lin.merge(f"winner-{i}", [clean[int(rng.integers(len(clean)))], clean[int(rng.integers(len(clean)))]],
                      "ties", extra_c={"zoo_math": lift})
        plants[m.name] = ("winners_curse", lift)
    for i, steps in enumerate((3, 4, 6)):
        prev = clean[int(rng.integers(len(clean)))]
        for j in range(steps):
            m = lin.merge(f"chain{i}-{j}", [prev, clean[int(rng.integers(len(clean)))]], "ties", [0.8, 0.2],
                          extra_c={"zoo_math": 0.02})
            m.selections.append(("zoo_math", "public", "user"))
            prev = m.name
        plants[prev] = ("chain", lin.models[prev].contamination.get("zoo_math", 0.0))
    return lin, _robustness(lin), plants


def _robustness(lin: gs.Lineage) -> dict[str, float]:
    """Model-specific natural-gap term: parentless ~ N(0, 3 pts), merges the weighted mean + N(0, 1 pt)."""
    rob: dict[str, float] = {}
    for m in lin.models.values():  # creation order: parents first
        if not m.parents:
            rob[m.name] = float(lin.rng.normal(0, 0.03))
        else:
            rob[m.name] = sum(w * rob[p] for p, _r, w in m.parents) / sum(w for _p, _r, w in m.parents) \
                + float(lin.rng.normal(0, 0.01))
    return rob


def natural_gap(rob: float, skill: float, natural: str) -> float:
    """A clean model's expected public - twin gap (module docstring)."""
    if natural == "floor":
        return (FLOOR_RHO + 2 * rob) * max(0.0, skill - CHANCE)
    return rob + TWIN_GAP_SKILL * (skill - 0.5)


def write_store(path: Path, lin: gs.Lineage, rob: dict[str, float], docs: int, seed: int,
                natural: str = "linear") -> None:
    fr = gs.frames(lin, None, seed)
    by_id = {m.model_id: m for m in lin.models.values()}
    runs = fr["gen_runs"]
    nat = [0.0 if split == "public" else natural_gap(rob[by_id[mid].name], by_id[mid].ability[suite], natural)
           for mid, suite, split in zip(runs["model_id"], runs["suite"], runs["split"], strict=True)]
    runs["p"] = np.clip(runs["p"].to_numpy() - np.asarray(nat), 0.02, 0.98)
    gs.write(path, fr, docs, None, False)


def score(path: Path, lin: gs.Lineage, plants: dict, docs: int) -> dict:
    from harness.analysis.coverage import coverage
    from harness.analysis.evidence import gather
    from harness.analysis.overfit import THRESHOLDS, analyse_data
    from harness.store import Store

    data = gather(Store(path), twins=gs.mapped_twins(path, docs))
    flags = [f for f in analyse_data(data) if f.signal in SIGNALS]
    cover = coverage(data, THRESHOLDS, flags)
    truth = {m.name: max(m.contamination.values(), default=0.0) for m in lin.models.values()}
    clean = {n for n, c in truth.items() if c < gs.NEGATIVE_C}
    checked = {(c.model, c.suite) for c in cover if c.status == "checked"}
    selected = {m.name for m in lin.models.values() if m.selections and m.parents}
    out = {"false": defaultdict(int), "trials": defaultdict(int), "plants": []}
    out["trials"]["twin_gap"] = out["trials"]["lineage_divergence"] = sum(m in clean for m, _s in checked)
    out["trials"]["specialisation"] = len(selected & clean)
    for f in flags:
        if f.model in clean:
            out["false"][f.signal] += 1
    hit = {f.model for f in flags if f.signal in ("twin_gap", "lineage_divergence")}
    out["plants"] = [(kind, c, name in hit) for name, (kind, c) in plants.items()]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=5)
    ap.add_argument("--models", type=int, default=240)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--natural", choices=("linear", "floor"), default="linear",
                    help="the natural gap's shape: linear in skill, or zero at chance and growing above it")
    ap.add_argument("--chance-sources", type=int, default=8, help="with --natural floor: sources at chance level")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", help="write the stores (and truth_<seed>.json) into this folder instead of a temp one")
    args = ap.parse_args(argv)
    from harness.analysis.flags import THRESHOLDS

    start = time.perf_counter()
    false, trials, plants = defaultdict(int), defaultdict(int), []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in range(args.stores):
            lin, rob, planted = population(seed, args.models, args.docs,
                                           args.chance_sources if args.natural == "floor" else 0)
            path = folder / f"cal{seed}.duckdb"
            write_store(path, lin, rob, args.docs, seed, args.natural)
            if args.keep:
                truth = {m.name: max(m.contamination.values(), default=0.0) for m in lin.models.values()}
                (folder / f"truth_{seed}.json").write_text(json.dumps(truth))
            got = score(path, lin, planted, args.docs)
            for s in SIGNALS:
                false[s] += got["false"][s]
                trials[s] += got["trials"][s]
            plants += got["plants"]
    nominal = {"twin_gap": THRESHOLDS.fdr, "lineage_divergence": THRESHOLDS.fdr,
               "specialisation": 0.5 * math.erfc(THRESHOLDS.loss_z / math.sqrt(2))}
    report = {"stores": args.stores, "models": args.models, "docs": args.docs, "natural": args.natural,
              "seconds": round(time.perf_counter() - start, 1), "false_flag_rate": {}, "recall": {}}
    print(f"{args.stores} stores x ~{args.models} models, {args.docs} docs per split, natural gap {args.natural} "
          f"({report['seconds']} s)\nsignal               false/trials  rate    95% interval    nominal")
    for s in SIGNALS:
        lo, hi = wilson(false[s], trials[s])
        rate = false[s] / trials[s] if trials[s] else 0.0
        report["false_flag_rate"][s] = {"false": false[s], "trials": trials[s], "rate": rate, "ci": [lo, hi],
                                        "nominal": nominal[s]}
        print(f"{s:20} {false[s]:>5}/{trials[s]:<6}  {100 * rate:5.2f}%  [{100 * lo:.2f}, {100 * hi:.2f}]%  "
              f"{100 * nominal[s]:.2f}%")
    print("plant kind      true lift (pts)  flagged")
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for kind, c, hit in plants:
        band = "< 5" if c < 0.05 else "5-10" if c < 0.10 else ">= 10"
        groups[(kind, band)].append(hit)
    for (kind, band), hits in sorted(groups.items()):
        report["recall"][f"{kind} {band}"] = {"flagged": sum(hits), "plants": len(hits)}
        print(f"{kind:15} {band:>15}  {sum(hits)}/{len(hits)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
