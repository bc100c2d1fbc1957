"""Fill a harness store with realistic synthetic models, lineages, runs and per-sample rows, fast.

    python benchmarks/gen_store.py OUT.duckdb --models 5000 --docs 67      # ~5,000 models, ~2 million samples
    python benchmarks/gen_store.py OUT.duckdb --planted-only --docs 300    # the small store the tests use

Every model has a latent ability per suite and a "contamination" that lifts only its public-split score (what
training or selecting on the public split does). Merges average their parents' ability and contamination (weighted),
plus a small method-dependent bonus and noise. Per-document scores come from hashes inside DuckDB, so 2 million rows
are written in one bulk INSERT ... SELECT; public and twin splits share document ids and 70% of the per-document
randomness (a perturbed twin of the same item), held-out documents are different items.

Planted cases (always present, named): `zoo-overfit` (fine-tuned on zoo_math's public split, selection process
"train"), an over-searched evolve run (`evo-best`, process "evolve"), a creeping chain `creep-1..4` (each merge a
little more contaminated), a specialist `spec-code` (selected on zoo_code, loses elsewhere), `merge-of-overfit`
(inherits contamination), clean merges `merge-*` and unrelated references `ref-*`. `truth()` returns which models
the analysis should flag. This script writes the store directly in bulk (it is a generator, not the product).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SUITES: dict[str, tuple[str, ...]] = {
    "zoo_math": ("public", "heldout", "twin"),
    "zoo_lang": ("public", "twin"),
    "zoo_code": ("public",),
}
TWINS: dict[str, dict[str, str]] = {  # plain refs: independent twins, never paired (see mapped_twins)
    "zoo_math": {"heldout": "zoo_math:heldout", "perturbed": "zoo_math:twin"},
    "zoo_lang": {"perturbed": "zoo_lang:twin"},
}
SPLIT_OFFSET = {"public": 0.0, "heldout": -0.02, "twin": -0.03}
METHOD_BONUS = {"linear": 0.0, "slerp": 0.005, "ties": 0.01, "dare_ties": 0.015, "task_arithmetic": 0.005,
                "breadcrumbs": 0.008}
POSITIVE_C = 0.06   # true public-only lift at or above which a model should be flagged
NEGATIVE_C = 0.02   # below which it must not be


@dataclass
class Model:
    model_id: str
    name: str
    kind: str
    ability: dict[str, float]
    contamination: dict[str, float] = field(default_factory=dict)
    method: str | None = None
    parents: list[tuple[str, str, float]] = field(default_factory=list)  # (parent name, role, weight)
    selections: list[tuple[str, str, str]] = field(default_factory=list)  # (suite, split, process)
    specialist: bool = False


def _mid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Lineage:
    """The model population, built in creation order (parents before children)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.models: dict[str, Model] = {}

    def source(self, name: str, kind: str = "source", level: float | None = None) -> Model:
        base = level if level is not None else float(self.rng.uniform(0.35, 0.65))
        ability = {s: float(np.clip(base + self.rng.normal(0, 0.05), 0.1, 0.9)) for s in SUITES}
        return self._add(Model(_mid(name), name, kind, ability))

    def merge(self, name: str, parents: list[str], method: str, weights: list[float] | None = None,
              extra_c: dict[str, float] | None = None, shift: dict[str, float] | None = None,
              kind: str = "merge") -> Model:
        weights = weights or [1.0 / len(parents)] * len(parents)
        ps = [self.models[p] for p in parents]
        ability = {}
        for s in SUITES:
            mean = sum(w * p.ability[s] for w, p in zip(weights, ps, strict=True))
            ability[s] = float(np.clip(mean + METHOD_BONUS[method] + self.rng.normal(0, 0.008)
                                       + (shift or {}).get(s, 0.0), 0.05, 0.95))
        contamination = {s: sum(w * p.contamination.get(s, 0.0) for w, p in zip(weights, ps, strict=True))
                         for s in SUITES}
        for s, c in (extra_c or {}).items():
            contamination[s] += c
        roles = ["base"] + ["source"] * (len(parents) - 1)
        m = Model(_mid(name), name, kind, ability, {s: c for s, c in contamination.items() if c},
                  method, [(p, r, w) for p, r, w in zip(parents, roles, weights, strict=True)])
        return self._add(m)

    def finetune(self, name: str, parent: str, extra_c: dict[str, float], shift: dict[str, float]) -> Model:
        p = self.models[parent]
        ability = {s: float(np.clip(p.ability[s] + shift.get(s, 0.0), 0.05, 0.95)) for s in SUITES}
        contamination = {s: p.contamination.get(s, 0.0) + extra_c.get(s, 0.0) for s in SUITES}
        m = Model(_mid(name), name, "zoo", ability, {s: c for s, c in contamination.items() if c},
                  None, [(parent, "finetuned_from", 1.0)])
        return self._add(m)

    def _add(self, m: Model) -> Model:
        self.models[m.name] = m
        return m


def planted(lin: Lineage) -> dict:
    """The named cases; returns the evolve run's description."""
    for i, n in enumerate(("src-a", "src-b", "src-c", "src-d")):
        lin.source(n, level=0.45 + 0.04 * i)
    for i in range(1, 5):
        lin.source(f"ref-{i}", level=0.4 + 0.05 * i)
    lin.merge("merge-linear", ["src-a", "src-b"], "linear")
    lin.merge("merge-ties", ["src-b", "src-c"], "ties")
    lin.merge("merge-slerp", ["src-c", "src-d"], "slerp")
    lin.merge("merge-dare", ["merge-linear", "merge-ties"], "dare_ties")
    lin.merge("merge-deep", ["merge-dare", "merge-slerp"], "task_arithmetic")
    lin.merge("merge-deeper", ["merge-deep", "src-a"], "breadcrumbs", [0.7, 0.3])
    over = lin.finetune("zoo-overfit", "src-a", {"zoo_math": 0.35}, {"zoo_lang": -0.04})
    over.selections.append(("zoo_math", "public", "train"))
    lin.merge("merge-of-overfit", ["zoo-overfit", "src-b"], "linear")
    prev = "src-d"
    for i in range(1, 5):
        m = lin.merge(f"creep-{i}", [prev, "src-b"], "ties", [0.8, 0.2], extra_c={"zoo_math": 0.04})
        m.selections.append(("zoo_math", "public", "user"))
        prev = m.name
    spec = lin.merge("spec-code", ["src-a", "src-c"], "task_arithmetic",
                     shift={"zoo_code": 0.14, "zoo_lang": -0.12, "zoo_math": -0.08})
    spec.selections.append(("zoo_code", "public", "user"))
    spec.specialist = True
    best = lin.merge("evo-best", ["src-b", "src-c"], "dare_ties", extra_c={"zoo_math": 0.20})
    best.selections.append(("zoo_math", "public", "evolve"))
    return {"evolve_id": "evo-overfit", "best": best.name, "parents": ["src-b", "src-c"], "generations": 12}


def random_population(lin: Lineage, n_models: int, n_sources: int, contaminate: float) -> None:
    names = [m.name for m in lin.models.values()]
    for i in range(n_sources):
        names.append(lin.source(f"source-{i:03d}").name)
    methods = list(METHOD_BONUS)
    while len(lin.models) < n_models:
        k = len(lin.models)
        recent = names[max(0, len(names) - 150):]
        a = recent[int(lin.rng.integers(len(recent)))]
        b = names[int(lin.rng.integers(len(names)))]
        if a == b:
            continue
        w = float(lin.rng.uniform(0.3, 0.7))
        extra = {}
        if lin.rng.random() < contaminate:
            extra = {"zoo_math" if lin.rng.random() < 0.7 else "zoo_lang": float(lin.rng.uniform(0.1, 0.25))}
        m = lin.merge(f"merge-{k:05d}", [a, b], methods[k % len(methods)], [w, 1 - w], extra_c=extra)
        if extra and lin.rng.random() < 0.5:
            m.selections.append((next(iter(extra)), "public", "user"))
        names.append(m.name)


def truth(lin: Lineage) -> dict[str, bool | None]:
    """Model name -> True (should be flagged), False (must not be), None (borderline, not counted)."""
    out: dict[str, bool | None] = {}
    for m in lin.models.values():
        c = max([v for s, v in m.contamination.items() if s in TWINS] or [0.0])
        out[m.name] = True if (c >= POSITIVE_C or m.specialist) else False if c < NEGATIVE_C else None
    return out


# ---------------------------------------------------------------------------------------- frames
def frames(lin: Lineage, evolve: dict | None, seed: int = 0) -> dict[str, pd.DataFrame]:
    ms = list(lin.models.values())
    models = pd.DataFrame({
        "model_id": [m.model_id for m in ms], "name": [m.name for m in ms], "path": None,
        "kind": [m.kind for m in ms], "source": [m.kind for m in ms], "architecture": "LlamaForCausalLM",
        "n_params": 1_000_000, "recipe_id": [_mid("recipe:" + m.name) if m.method else None for m in ms],
        "materialized": True, "meta": [json.dumps({"synthetic": True}) for _ in ms],
    })
    recipes = pd.DataFrame([
        {"recipe_id": _mid("recipe:" + m.name), "method": m.method,
         "yaml": f"merge_method: {m.method}\nmodels: [{', '.join(p for p, _, _ in m.parents)}]\n"}
        for m in ms if m.method])
    lineage = pd.DataFrame([
        {"child_id": m.model_id, "parent_id": lin.models[p].model_id, "role": r, "weight": w, "params": "{}"}
        for m in ms for p, r, w in m.parents])
    sels = pd.DataFrame([
        {"selection_id": _mid(f"sel:{m.name}:{s}:{sp}"), "model_id": m.model_id, "suite": s, "split": sp,
         "process": proc, "process_id": evolve["evolve_id"] if proc == "evolve" and evolve else None,
         "note": "synthetic"}
        for m in ms for s, sp, proc in m.selections],
        columns=["selection_id", "model_id", "suite", "split", "process", "process_id", "note"])
    runs = []
    for m in ms:
        for suite, splits in SUITES.items():
            for split in splits:
                p = m.ability[suite] + SPLIT_OFFSET[split]
                if split == "public":
                    p += m.contamination.get(suite, 0.0)
                runs.append({"run_id": _mid(f"run:{m.name}:{suite}:{split}")[:32], "model_id": m.model_id,
                             "suite": suite, "split": split, "p": float(np.clip(p, 0.02, 0.98)), "seed": seed})
    return {"models": models, "recipes": recipes, "lineage": lineage, "selections": sels,
            "gen_runs": pd.DataFrame(runs)}


def evolve_frames(lin: Lineage, evolve: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An over-searched run: public fitness keeps climbing while the held-out score stalls then falls."""
    rng = np.random.default_rng(seed + 1)
    best = lin.models[evolve["best"]]
    rows = []
    for g in range(evolve["generations"]):
        for i in range(8):
            lift = 0.20 * (g + 1) / evolve["generations"] * rng.uniform(0.6, 1.0)
            fit = best.ability["zoo_math"] - 0.05 + lift + rng.normal(0, 0.01)
            held = best.ability["zoo_math"] - 0.03 + 0.03 * min(g, 3) / 3 - 0.004 * max(0, g - 3) + rng.normal(0, 0.01)
            mid = best.model_id if (g == evolve["generations"] - 1 and i == 0) else _mid(f"cand:{g}:{i}")
            rows.append({"evolve_id": evolve["evolve_id"], "generation": g, "idx": i, "model_id": mid,
                         "params": json.dumps({"weight": round(float(rng.uniform(0, 1)), 3)}),
                         "fitness": float(fit), "heldout": float(held)})
    cands = pd.DataFrame(rows)
    cfg = {"parents": evolve["parents"], "suite": "zoo_math", "split": "public", "heldout": "zoo_math:heldout",
           "population": 8, "generations": evolve["generations"], "method": "dare_ties"}
    runs = pd.DataFrame([{"evolve_id": evolve["evolve_id"], "config": json.dumps(cfg), "status": "complete",
                          "generation": evolve["generations"], "best_model_id": best.model_id}])
    return runs, cands


# ---------------------------------------------------------------------------------------- writing
SAMPLES_SQL = """
INSERT INTO samples
WITH docs AS (
    SELECT r.run_id, r.model_id, r.suite, r.split, r.p, r.seed, d.range AS i
    FROM gen_runs r, range(?) d
), u AS (
    SELECT *, CASE WHEN split = 'heldout' THEN i + 100000 ELSE i END AS doc_id,
        (hash(seed::VARCHAR || model_id || suite || i::VARCHAR) % 1000003) / 1000003.0 AS u_shared,
        (hash(seed::VARCHAR || run_id || i::VARCHAR || 'own') % 1000003) / 1000003.0 AS u_own,
        (hash(seed::VARCHAR || run_id || i::VARCHAR || 'mix') % 10) AS mix
    FROM docs
), s AS (
    SELECT *, CASE WHEN split = 'heldout' OR (split = 'twin' AND mix >= 7) THEN u_own ELSE u_shared END AS u
    FROM u
)
SELECT run_id, suite || '_gen_' || split AS task, doc_id, 'acc' AS metric,
    md5(suite || doc_id::VARCHAR) AS doc_hash, NULL AS prompt_hash, NULL AS target_hash,
    'Problem ' || doc_id::VARCHAR || ' of ' || suite || ' (' || split || '): what is ' || (doc_id % 97)::VARCHAR
        || ' plus ' || (doc_id % 13)::VARCHAR || '?' AS prompt,
    CASE WHEN u < p THEN ((doc_id % 97) + (doc_id % 13))::VARCHAR ELSE ((doc_id % 97) + 1)::VARCHAR END
        AS prediction,
    ((doc_id % 97) + (doc_id % 13))::VARCHAR AS target,
    CASE WHEN u < p THEN 1.0 ELSE 0.0 END AS score, NULL AS extra
FROM s
"""
SCORES_SQL = """
INSERT INTO scores
SELECT run_id, task, metric, avg(score), sqrt(avg(score) * (1 - avg(score)) / greatest(count(*) - 1, 1)),
       count(*),
       avg(score) - 1.96 * sqrt(avg(score) * (1 - avg(score)) / greatest(count(*) - 1, 1)),
       avg(score) + 1.96 * sqrt(avg(score) * (1 - avg(score)) / greatest(count(*) - 1, 1))
FROM samples WHERE run_id IN (SELECT run_id FROM gen_runs) GROUP BY run_id, task, metric
"""
# Like a real run (harness/evaluate/lm_eval_rows.py): one `_aggregate` row per run and metric, the macro mean over its
# tasks, which a suite score must never count as one more task.
AGGREGATE_SQL = """
INSERT INTO scores
SELECT run_id, '_aggregate', metric, avg(value), sqrt(sum(stderr * stderr)) / count(*), sum(n),
       avg(value) - 1.96 * sqrt(sum(stderr * stderr)) / count(*),
       avg(value) + 1.96 * sqrt(sum(stderr * stderr)) / count(*)
FROM scores WHERE run_id IN (SELECT run_id FROM gen_runs) GROUP BY run_id, metric
"""


def write(path: Path, fr: dict[str, pd.DataFrame], n_docs: int, evolve: tuple | None, indexes: bool) -> None:
    from harness.store import Store
    from harness.store.doc_index import index_all

    store = Store(path)
    store.init()
    with store.db.write() as con:
        for name in ("models", "recipes", "lineage", "selections", "gen_runs"):
            con.register(name + "_df", fr[name])
        con.execute("INSERT INTO models (model_id, name, path, kind, source, architecture, n_params, recipe_id, "
                    "materialized, meta) SELECT * FROM models_df")
        con.execute("INSERT INTO aliases SELECT name, model_id, current_timestamp FROM models_df")
        if len(fr["recipes"]):
            con.execute("INSERT INTO recipes (recipe_id, method, yaml) SELECT * FROM recipes_df")
        if len(fr["lineage"]):
            con.execute("INSERT INTO lineage SELECT * FROM lineage_df")
        if len(fr["selections"]):
            con.execute("INSERT INTO selections (selection_id, model_id, suite, split, process, process_id, note) "
                        "SELECT * FROM selections_df")
        con.execute("CREATE TEMP TABLE gen_runs AS SELECT * FROM gen_runs_df")
        con.execute("INSERT INTO runs (run_id, model_id, suite, suite_version, split, data_hash, backend, "
                    "backend_version, harness_version, settings, seed, status, started, ended) "
                    "SELECT run_id, model_id, suite, '1', split, md5(suite || split), 'synthetic', NULL, '0.1.0', "
                    "'{\"tier\": \"synthetic\"}', 0, 'complete', current_timestamp, current_timestamp "
                    "FROM gen_runs")
        con.execute(SAMPLES_SQL, [n_docs])
        index_all(con)  # the per-document index Store.finish_run writes with a run's samples
        con.execute(SCORES_SQL)
        con.execute(AGGREGATE_SQL)
        if evolve is not None:
            con.register("evolve_runs_df", evolve[0])
            con.register("evolve_cands_df", evolve[1])
            con.execute("INSERT INTO evolve_runs (evolve_id, config, status, generation, best_model_id, ended) "
                        "SELECT *, current_timestamp FROM evolve_runs_df")
            con.execute("INSERT INTO evolve_candidates SELECT * FROM evolve_cands_df")
        if indexes:  # generator-only speed-ups (the product schema has samples_run already)
            con.execute("CREATE INDEX IF NOT EXISTS lineage_child ON lineage (child_id)")
            con.execute("CREATE INDEX IF NOT EXISTS runs_model ON runs (model_id)")


def mapped_twins(path: str | Path, docs: int) -> dict[str, dict[str, dict]]:
    """TWINS with the perturbed twins declared aligned: writes their item maps (harness/twinmaps.py) beside the
    store at `path` (twin doc i of suite_gen_twin is public doc i of suite_gen_public) and returns the twins."""
    out: dict[str, dict[str, dict]] = {}
    for suite, kinds in TWINS.items():
        out[suite] = {}
        for kind, ref in kinds.items():
            if kind != "perturbed":
                out[suite][kind] = {"ref": ref}
                continue
            public_task, twin_task = f"{suite}_gen_public", f"{suite}_gen_twin"
            body = {"suite": suite, "kind": kind, "twin": ref, "relation": "aligned",
                    "public_sizes": {public_task: docs},
                    "tasks": {twin_task: {"public_task": public_task, "seeds": list(range(docs))}}}
            map_path = Path(f"{path}.{suite}.{kind}.json").resolve()
            map_path.write_text(json.dumps(body), encoding="utf-8")
            out[suite][kind] = {"ref": ref, "relation": "aligned", "map": str(map_path)}
    return out


def build(path: str | Path, models: int = 0, docs: int = 300, seed: int = 0, sources: int = 40,
          contaminate: float = 0.01, indexes: bool = False) -> dict[str, bool | None]:
    """Write a synthetic store at `path` (must not exist yet); returns the ground truth (see `truth`)."""
    path = Path(path)
    if path.exists():
        raise SystemExit(f"{path} exists: pass a new path")
    lin = Lineage(seed)
    evolve = planted(lin)
    if models > len(lin.models):
        random_population(lin, models, sources, contaminate)
    fr = frames(lin, evolve, seed)
    write(path, fr, docs, evolve_frames(lin, evolve, seed), indexes)
    return truth(lin)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--models", type=int, default=5000)
    ap.add_argument("--docs", type=int, default=67, help="documents per run (6 runs per model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--planted-only", action="store_true")
    ap.add_argument("--truth", help="write the ground truth (name -> true/false/null) to this JSON file")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    t = build(args.out, 0 if args.planted_only else args.models, args.docs, args.seed)
    from harness.store import Store

    counts = Store(args.out).counts()
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{k}={v:,}" for k, v in counts.items() if k != "meta"))
    if args.truth:
        Path(args.truth).write_text(json.dumps(t, indent=1))


if __name__ == "__main__":
    sys.exit(main())
