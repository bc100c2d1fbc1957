"""What an evolution run writes to the store and reads back (tables evolve_runs and evolve_candidates).

Each candidate is a model row (kind="candidate", materialized=False) with its recipe and lineage edges, and an
evolve_candidates row with its parameters and fitness. The optimizer state is saved after every generation, so a
killed run resumes where it stopped. Short transactions, parameterised SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store import Store


@dataclass(frozen=True)
class EvolveRun:
    evolve_id: str
    config: dict[str, Any]
    status: str  # running | complete | failed
    generation: int  # the last finished generation (0: none yet)
    optimizer_state: bytes | None
    best_model_id: str | None


@dataclass(frozen=True)
class Candidate:
    generation: int
    idx: int
    model_id: str
    params: dict[str, Any]
    fitness: float | None  # None: the merge failed (non-finite weights)
    heldout: float | None


def get_run(store: Store, evolve_id: str) -> EvolveRun | None:
    with store.db.read() as con:
        row = con.execute("SELECT evolve_id, config, status, generation, optimizer_state, best_model_id "
                          "FROM evolve_runs WHERE evolve_id = ?", [evolve_id]).fetchone()
    if row is None:
        return None
    return EvolveRun(row[0], json.loads(row[1]), row[2], int(row[3]), bytes(row[4]) if row[4] else None, row[5])


def start_run(store: Store, evolve_id: str, config: dict[str, Any]) -> None:
    with store.db.write() as con:
        con.execute("INSERT INTO evolve_runs (evolve_id, config, status, generation) VALUES (?, ?, 'running', 0) "
                    "ON CONFLICT (evolve_id) DO UPDATE SET status = 'running', ended = NULL",
                    [evolve_id, json.dumps(config, default=str)])


def save_generation(store: Store, evolve_id: str, generation: int, state: bytes, best_model_id: str | None) -> None:
    with store.db.write() as con:
        con.execute("UPDATE evolve_runs SET generation = ?, optimizer_state = ?, best_model_id = ? "
                    "WHERE evolve_id = ?", [generation, state, best_model_id, evolve_id])


def finish_run(store: Store, evolve_id: str, status: str, best_model_id: str | None = None) -> None:
    with store.db.write() as con:
        con.execute("UPDATE evolve_runs SET status = ?, best_model_id = COALESCE(?, best_model_id), "
                    "ended = current_timestamp WHERE evolve_id = ?", [status, best_model_id, evolve_id])


@dataclass(frozen=True)
class CandidateRow:
    """One evolve_candidates row to write: `model_id` is "empty-path" for a layer path selecting no layer."""

    idx: int
    model_id: str
    params: dict[str, Any]
    fitness: float | None


def add_candidate_model(store: Store, evolve_id: str, generation: int, idx: int, plan: Any,
                        params: dict[str, Any]) -> None:
    """The candidate's model row (unless a model with that id exists), recipe and lineage. `plan` is a harness.merge
    MergePlan (model_id, recipe_id, method, normalised_yaml(), parents, seed, mergekit_version); the store does not
    import the merge package."""
    from harness.store import LineageEdge, ModelRecord

    if store.find_model(plan.model_id) is not None:
        return
    store.add_recipe(plan.recipe_id, plan.method, plan.normalised_yaml())
    store.add_model(ModelRecord(
        model_id=plan.model_id, name=None, path=None, kind="candidate", source="evolve",
        recipe_id=plan.recipe_id, materialized=False,
        meta={"evolve_id": evolve_id, "generation": generation, "idx": idx, "params": params,
              "seed": plan.seed, "method": plan.method, "mergekit": plan.mergekit_version},
    ))
    store.add_lineage([LineageEdge(child_id=plan.model_id, parent_id=p.model_id, role=p.role, weight=p.weight,
                                   params=p.params) for p in plan.parents])


def record_generation(store: Store, evolve_id: str, generation: int, rows: list[CandidateRow]) -> None:
    """A generation's evolve_candidates rows, in one transaction: a kill leaves all of them or none (a generation
    shown with part of its candidates would be read as a whole one)."""
    with store.db.write() as con:
        for r in rows:
            con.execute("INSERT OR REPLACE INTO evolve_candidates VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        [evolve_id, generation, r.idx, r.model_id, json.dumps(r.params), r.fitness])


def set_heldout(store: Store, evolve_id: str, model_id: str, value: float) -> None:
    with store.db.write() as con:
        con.execute("UPDATE evolve_candidates SET heldout = ? WHERE evolve_id = ? AND model_id = ?",
                    [value, evolve_id, model_id])


def cache_fitness(store: Store, model_id: str, fitness_key: str, fitness: float | None,
                  outcome: dict[str, Any]) -> None:
    """A scored candidate's fitness under a fitness key, written as soon as it is scored (before its generation's
    rows): a run killed mid-generation reuses it on resume."""
    with store.db.write() as con:
        con.execute("INSERT OR REPLACE INTO evolve_fitness (model_id, fitness_key, fitness, outcome) "
                    "VALUES (?, ?, ?, ?)", [model_id, fitness_key, fitness, json.dumps(outcome)])


def cached_fitness(store: Store, model_id: str, fitness_key: str) -> tuple[bool, float | None, dict[str, Any]]:
    """(found, fitness, what else its scoring gave: per_suite, stderr) of this model under the same fitness key,
    from the fitness cache or any evolution run's candidates (stores written before the cache)."""
    with store.db.read() as con:
        row = con.execute("SELECT fitness, outcome FROM evolve_fitness WHERE model_id = ? AND fitness_key = ?",
                          [model_id, fitness_key]).fetchone()
        if row is None:
            row = con.execute(
                "SELECT c.fitness, NULL FROM evolve_candidates c JOIN evolve_runs r USING (evolve_id) "
                "WHERE c.model_id = ? AND json_extract_string(r.config, '$.fitness_key') = ? LIMIT 1",
                [model_id, fitness_key],
            ).fetchone()
    if row is None:
        return False, None, {}
    return True, row[0], json.loads(row[1]) if row[1] else {}


def candidates(store: Store, evolve_id: str) -> list[Candidate]:
    with store.db.read() as con:
        rows = con.execute("SELECT generation, idx, model_id, params, fitness, heldout FROM evolve_candidates "
                           "WHERE evolve_id = ? ORDER BY generation, idx", [evolve_id]).fetchall()
    return [Candidate(int(r[0]), int(r[1]), r[2], json.loads(r[3]) if r[3] else {}, r[4], r[5]) for r in rows]


def best(cands: list[Candidate]) -> Candidate | None:
    """The fittest candidate; ties go to the earliest (generation, idx)."""
    ok = [c for c in cands if c.fitness is not None]
    return max(ok, key=lambda c: (c.fitness, -c.generation, -c.idx)) if ok else None


def top(cands: list[Candidate], count: int) -> list[Candidate]:
    """The `count` fittest distinct models, fittest first (ties go to the earliest)."""
    out: dict[str, Candidate] = {}
    for c in sorted((c for c in cands if c.fitness is not None), key=lambda c: (-c.fitness, c.generation, c.idx)):
        if len(out) < count:
            out.setdefault(c.model_id, c)
    return list(out.values())


def pick(cands: list[Candidate], finalists_split: str | None = None, count: int | None = None) -> Candidate | None:
    """The run's pick: the fittest candidate, or, with declared finalists, the best on their split of the `count`
    fittest (ties: the fitter on the search split). A finalist of an earlier pass of a run since extended that is
    no longer among the `count` fittest does not compete."""
    among = top(cands, count) if count is not None else cands
    scored = [c for c in among if (f := c.params.get("finalist")) and f["split"] == finalists_split
              and f["fitness"] is not None]
    if finalists_split is None or not scored:
        return best(cands)
    return max(scored, key=lambda c: (c.params["finalist"]["fitness"], c.fitness, -c.generation, -c.idx))


def set_finalist(store: Store, evolve_id: str, model_id: str, split: str, value: float | None) -> None:
    """A finalist's score on the finalists' split, kept in its params (every row of that model in the run)."""
    with store.db.write() as con:
        rows = con.execute("SELECT generation, idx, params FROM evolve_candidates WHERE evolve_id = ? AND model_id = ?",
                           [evolve_id, model_id]).fetchall()
        for generation, idx, params in rows:
            new = {**(json.loads(params) if params else {}), "finalist": {"split": split, "fitness": value}}
            con.execute("UPDATE evolve_candidates SET params = ? WHERE evolve_id = ? AND generation = ? AND idx = ?",
                        [json.dumps(new), evolve_id, generation, idx])


def history(store: Store, evolve_id: str) -> list[dict[str, Any]]:
    """Per generation: candidates, best, mean, best so far, and the held-out score and fitness standard error of the
    generation's fittest candidate (None when it was not checked)."""
    out: list[dict[str, Any]] = []
    so_far = float("-inf")
    by_gen: dict[int, list[Candidate]] = {}
    for c in candidates(store, evolve_id):
        by_gen.setdefault(c.generation, []).append(c)
    for g, cs in sorted(by_gen.items()):
        fit = [c.fitness for c in cs if c.fitness is not None]
        so_far = max([so_far, *fit])
        top = best(cs)
        out.append({"generation": g, "candidates": len(cs), "best": max(fit) if fit else None,
                    "mean": sum(fit) / len(fit) if fit else None, "best_so_far": so_far,
                    "heldout": top.heldout if top else None,
                    "stderr": top.params.get("stderr") if top else None})  # of the generation's best fitness
    return out


def add_selection(store: Store, model_id: str, suite: str, split: str, evolve_id: str, note: str | None = None) -> None:
    store.select(model_id, suite, "evolve", split=split, process_id=evolve_id,
                 note=note or f"best candidate of evolve run {evolve_id}")
