"""Models, names, recipes, lineage and selections: the part of the store that merges and evolve write."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, did_you_mean
from harness.store.records import LineageEdge, ModelRecord, Selection

if TYPE_CHECKING:
    from harness.store.database import Database

_MODEL_COLS = "model_id, name, path, kind, source, architecture, n_params, recipe_id, materialized, meta, created"


def _model(row: tuple) -> ModelRecord:
    meta = json.loads(row[9]) if row[9] else {}
    return ModelRecord(*row[:9], meta=meta, created=row[10])  # type: ignore[misc]


def name_taken(name: str, holder: str) -> HarnessError:
    return HarnessError(f"the name {name!r} is taken by model {holder[:12]} in this store",
                        "pass --name NEW (or set `name:` in the recipe); `harness models rename` moves a name")


class ModelsMixin:
    db: Database

    # --- models and names -------------------------------------------------------------------------------
    def add_model(self, model: ModelRecord, alias: str | None = None) -> None:
        """Insert or update a model; `alias` (default: its name) then points at it. A name that points at another
        model is refused (names are unique per store; `rename` moves one, explicitly)."""
        name = alias or model.name
        with self.db.write() as con:
            if name:
                holder = con.execute("SELECT model_id FROM aliases WHERE name = ?", [name]).fetchone()
                if holder is not None and holder[0] != model.model_id:
                    raise name_taken(name, holder[0])
            con.execute(
                f"INSERT OR REPLACE INTO models ({_MODEL_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE((SELECT created FROM models WHERE model_id = ?),"
                " current_timestamp))",
                [model.model_id, model.name, model.path, model.kind, model.source, model.architecture,
                 model.n_params, model.recipe_id, model.materialized, json.dumps(model.meta), model.model_id],
            )
            if name:
                con.execute(
                    "INSERT OR REPLACE INTO aliases VALUES (?, ?, current_timestamp)", [name, model.model_id]
                )

    def name_holder(self, name: str) -> str | None:
        """The id of the model `name` points at, or None when the name is free."""
        rows = self._fetch("SELECT model_id FROM aliases WHERE name = ?", [name])
        return rows[0][0] if rows else None

    def free_name(self, base: str, model_id: str) -> str:
        """`base` if it is free (or already this model's), else `base-<id[:8]>`: for names harness derives
        itself (a folder's name), never for names the user gave."""
        holder = self.name_holder(base)
        return base if holder in (None, model_id) else f"{base}-{model_id[:8]}"

    def rename(self, ref: str, name: str, force: bool = False) -> tuple[str, str | None]:
        """Give model `ref` the name `name` (its old name is dropped). A name that another model holds moves only
        with `force`; that model keeps `<name>-<its id[:8]>`. Returns (model id, the previous holder's id)."""
        model = self.get_model(ref)
        with self.db.write() as con:
            holder = con.execute("SELECT model_id FROM aliases WHERE name = ?", [name]).fetchone()
            other = holder[0] if holder is not None and holder[0] != model.model_id else None
            if other is not None and not force:
                raise HarnessError(f"the name {name!r} is taken by model {other[:12]}",
                                   f"pass --force to move it to {model.model_id[:12]} (that model keeps "
                                   f"{name}-{other[:8]}), or pick another name")
            if other is not None:
                kept = f"{name}-{other[:8]}"
                con.execute("UPDATE models SET name = ? WHERE model_id = ?", [kept, other])
                con.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, current_timestamp)", [kept, other])
            if model.name and model.name != name:
                con.execute("DELETE FROM aliases WHERE name = ? AND model_id = ?", [model.name, model.model_id])
            con.execute("UPDATE models SET name = ? WHERE model_id = ?", [name, model.model_id])
            con.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, current_timestamp)", [name, model.model_id])
        return model.model_id, other

    def find_model(self, ref: str) -> ModelRecord | None:
        """A model by id, unique id prefix (8+ chars), alias, or folder path; None if there is none."""
        with self.db.read() as con:
            row = con.execute(f"SELECT {_MODEL_COLS} FROM models WHERE model_id = ?", [ref]).fetchone()
            if row is None:
                row = con.execute(
                    f"SELECT {_MODEL_COLS} FROM models WHERE model_id = "
                    "(SELECT model_id FROM aliases WHERE name = ?)", [ref]
                ).fetchone()
            if row is None and len(ref) >= 8:
                rows = con.execute(
                    f"SELECT {_MODEL_COLS} FROM models WHERE starts_with(model_id, ?) LIMIT 2", [ref]
                ).fetchall()
                row = rows[0] if len(rows) == 1 else None
            if row is None:
                row = con.execute(
                    f"SELECT {_MODEL_COLS} FROM models WHERE path = ? ORDER BY created DESC LIMIT 1", [ref]
                ).fetchone()
        return _model(row) if row else None

    def get_model(self, ref: str) -> ModelRecord:
        model = self.find_model(ref)
        if model is None:
            names = [n for (n,) in self._fetch("SELECT name FROM aliases")]
            raise HarnessError(
                f"no model {ref!r} in the store{did_you_mean(ref, names)}",
                "pass a model folder, a registered name (harness models) or an id",
            )
        return model

    def list_models(self, kind: str | None = None) -> list[ModelRecord]:
        sql = f"SELECT {_MODEL_COLS} FROM models"
        args: list[object] = []
        if kind:
            sql += " WHERE kind = ?"
            args.append(kind)
        return [_model(r) for r in self._fetch(sql + " ORDER BY created, model_id", args)]

    def aliases(self) -> dict[str, str]:
        return dict(self._fetch("SELECT name, model_id FROM aliases ORDER BY name"))

    def add_recipe(self, recipe_id: str, method: str, yaml_text: str) -> None:
        with self.db.write() as con:
            con.execute(
                "INSERT INTO recipes (recipe_id, method, yaml) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [recipe_id, method, yaml_text],
            )

    def recipe(self, recipe_id: str) -> tuple[str, str] | None:
        rows = self._fetch("SELECT method, yaml FROM recipes WHERE recipe_id = ?", [recipe_id])
        return (rows[0][0], rows[0][1]) if rows else None

    # --- lineage ----------------------------------------------------------------------------------------
    def add_lineage(self, edges: list[LineageEdge]) -> None:
        with self.db.write() as con:
            for e in edges:
                con.execute(
                    "INSERT OR REPLACE INTO lineage VALUES (?, ?, ?, ?, ?)",
                    [e.child_id, e.parent_id, e.role, e.weight, json.dumps(e.params)],
                )

    def parents(self, model_id: str) -> list[LineageEdge]:
        rows = self._fetch(
            "SELECT child_id, parent_id, role, weight, params FROM lineage WHERE child_id = ? "
            "ORDER BY role, parent_id", [model_id]
        )
        return [LineageEdge(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else {}) for r in rows]

    def _walk(self, model_id: str, up: bool) -> dict[str, int]:
        """Every ancestor (up) or descendant with its shortest distance, by a recursive query."""
        near, far = ("child_id", "parent_id") if up else ("parent_id", "child_id")
        rows = self._fetch(
            f"""WITH RECURSIVE walk(node, depth) AS (
                    SELECT {far}, 1 FROM lineage WHERE {near} = ?
                    UNION
                    SELECT l.{far}, w.depth + 1 FROM lineage l JOIN walk w ON l.{near} = w.node
                    WHERE w.depth < 1000
                ) SELECT node, min(depth) FROM walk GROUP BY node ORDER BY 2, 1""",
            [model_id],
        )
        return {node: depth for node, depth in rows}

    def ancestors(self, model_id: str) -> dict[str, int]:
        return self._walk(model_id, up=True)

    def descendants(self, model_id: str) -> dict[str, int]:
        return self._walk(model_id, up=False)

    def depth(self, model_id: str) -> int:
        """Merge depth: 0 for a model with no parents, else 1 + the deepest parent's depth. The walk keeps each
        (ancestor, distance) once (UNION): UNION ALL followed every path, and the paths of a lineage whose merges
        share ancestors grow exponentially with its depth (a chain of merges of the two models before: 2 s at
        depth 34, x1.6 per level)."""
        rows = self._fetch(
            """WITH RECURSIVE walk(node, depth) AS (
                    SELECT ?, 0
                    UNION
                    SELECT l.parent_id, w.depth + 1 FROM lineage l JOIN walk w ON l.child_id = w.node
                    WHERE w.depth < 1000
                ) SELECT max(depth) FROM walk""",
            [model_id],
        )
        return int(rows[0][0] or 0)

    def roots(self, model_id: str) -> list[str]:
        """The ancestors that have no parents themselves (the original sources)."""
        anc = self.ancestors(model_id)
        if not anc:
            return [model_id]
        with_parents = {r[0] for r in self._fetch("SELECT DISTINCT child_id FROM lineage")}
        return sorted(a for a in anc if a not in with_parents)

    # --- selections -------------------------------------------------------------------------------------
    def lineage_tree(self, model_id: str, _seen: frozenset[str] = frozenset()) -> dict[str, Any]:
        """{model_id, name, kind, parents: [{role, weight, params, **subtree}]}, down to the sources: the nested view
        a merge of merges needs."""
        rec = self.find_model(model_id)
        node: dict[str, Any] = {"model_id": model_id, "name": rec.name if rec else None,
                                "kind": rec.kind if rec else None, "parents": []}
        if model_id in _seen:
            return node
        for e in self.parents(model_id):
            sub = self.lineage_tree(e.parent_id, _seen | {model_id})
            node["parents"].append({"role": e.role, "weight": e.weight, "params": e.params, **sub})
        return node

    def select(self, model_id: str, suite: str, process: str, split: str | None = None,
               process_id: str | None = None, note: str | None = None) -> str:
        """Record that `model_id` was chosen on suite[:split] by a process (evolve | check | user | train); the one
        id scheme: the same choice recorded twice is one row. Returns the selection id."""
        from harness.hashing import hash_json

        sel_id = "sel-" + hash_json({"model": model_id, "suite": suite, "split": split, "process": process,
                                     "process_id": process_id})[:24]
        self.add_selection(Selection(sel_id, model_id, suite, process, split=split, process_id=process_id,
                                     note=note))
        return sel_id

    def add_selection(self, sel: Selection) -> None:
        with self.db.write() as con:
            con.execute(
                "INSERT OR REPLACE INTO selections (selection_id, model_id, suite, split, process, process_id, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [sel.selection_id, sel.model_id, sel.suite, sel.split, sel.process, sel.process_id, sel.note],
            )

    def selections(self, model_ids: list[str] | None = None) -> list[Selection]:
        sql = "SELECT selection_id, model_id, suite, process, split, process_id, note, created FROM selections"
        args: list[object] = []
        if model_ids is not None:
            sql += " WHERE list_contains(?, model_id)"
            args.append(model_ids)
        return [Selection(*r) for r in self._fetch(sql + " ORDER BY created, selection_id", args)]

    def exposure(self, model_id: str) -> list[Selection]:
        """Selections of this model or any ancestor: the suites its scores are in-sample on."""
        return self.selections([model_id, *self.ancestors(model_id)])

    def _fetch(self, sql: str, args: list[object] | None = None) -> list[tuple]:
        with self.db.read() as con:
            return con.execute(sql, args or []).fetchall()
