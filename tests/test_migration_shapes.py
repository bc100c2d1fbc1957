"""The store files older releases wrote, as today's migrations and the migration tests' factory rebuild them.

A user upgrades harness over a store an older release wrote; the migration tests build such a store from today's
MIGRATIONS (or downgrade a new one, tests/factories.py `downgrade_store`). Both stand for the real file only while
no shipped migration is edited and the factory drops exactly what later versions added. SHAPES holds the schema of
stores written by the CLI of three older commits of main (`harness merge` of zoo-base and zoo-math, `harness eval`
of the three on zoo_math's three splits, --limit 8): dbe08f7 (v3), c2f4abc (v6) and 33593a3 (v7). Opened by today's
code, each kept every row of every table, and its leaderboard (27 rows), lineage and overfit coverage gave the old
figures (a v3 store's suite scores keep lm-eval's pooled stderr until `harness db info` or an evaluation fills them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from harness.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.factories import downgrade_store

# schema_shape() of the store each older release wrote (see the module docstring)
SHAPES = {3: "33b79b03a44ab650", 6: "afcc930919bbf813", 7: "60ad9672bf756eee"}


def schema_shape(path: Path) -> dict[str, list[list[object]]]:
    """Each column (type, nullability, default), constraint and index of the file, in a stable order."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            "columns": [list(r) for r in con.execute(
                "SELECT table_name, column_name, data_type, is_nullable, lower(column_default) "
                "FROM information_schema.columns ORDER BY table_name, ordinal_position").fetchall()],
            "constraints": [list(r) for r in con.execute(
                "SELECT table_name, constraint_type, constraint_column_names::VARCHAR FROM duckdb_constraints() "
                "ORDER BY ALL").fetchall()],
            "indexes": [list(r) for r in con.execute(
                "SELECT table_name, index_name, expressions FROM duckdb_indexes() ORDER BY ALL").fetchall()],
        }


def digest(shape: dict[str, list[list[object]]]) -> str:
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def replayed(path: Path, version: int) -> Path:
    """A store as a harness of schema `version` creates it: today's MIGRATIONS[:version], in one transaction."""
    con = duckdb.connect(str(path))
    con.execute("BEGIN TRANSACTION")
    for statements in MIGRATIONS[:version]:
        for step in statements:
            step(con) if callable(step) else con.execute(step)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(version)])
    con.execute("COMMIT")
    con.close()
    return path


@pytest.mark.parametrize("version", sorted(SHAPES))
def test_the_shipped_migrations_build_the_schema_older_releases_wrote(tmp_path: Path, version: int) -> None:
    """Editing a shipped migration (a column renamed in V1, an index dropped from V2) breaks the upgrade of every
    store an older release wrote, while the migration tests, which build their old stores from the same list, pass."""
    shape = schema_shape(replayed(tmp_path / "old.duckdb", version))
    tables = sorted({c[0] for c in shape["columns"]})
    assert digest(shape) == SHAPES[version], f"MIGRATIONS[:{version}] no longer build what a v{version} harness " \
        f"wrote (tables {tables}): a shipped migration was edited; append a new one instead"


@pytest.mark.parametrize("version", range(3, SCHEMA_VERSION))
def test_a_downgraded_store_has_the_schema_that_version_created(tmp_path: Path, version: int) -> None:
    """downgrade_store(path, v), which the migration tests use for the file an older harness wrote, leaves exactly
    the tables, columns, constraints and indexes MIGRATIONS[:v] create."""
    new = replayed(tmp_path / "new.duckdb", SCHEMA_VERSION)
    downgrade_store(new, version)
    got, want = schema_shape(new), schema_shape(replayed(tmp_path / "old.duckdb", version))
    wrong = {k: {"extra": [r for r in got[k] if r not in want[k]], "missing": [r for r in want[k] if r not in got[k]]}
             for k in want}
    assert got == want, f"downgrade_store(path, {version}) left: {wrong}"
