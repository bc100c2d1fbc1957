"""The floors of docs/development.md, checked: what may import what, SQL only in the store, one atomic-write helper,
one model identity, and `harness eval` planning once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

GROUND = {"harness", "harness.errors", "harness.paths", "harness.hashing", "harness.stats", "harness.atomic",
          "harness.identity", "harness.configs", "harness.cluster"}
FORBIDDEN_FOR_READERS = ("harness.evaluate", "harness.merge", "harness.evolve", "harness.workflows", "harness.cli",
                         "harness.zoo", "harness.train")
SQL = re.compile(r"\b(SELECT\s[\s\S]*\sFROM\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
                 r"CREATE\s+(TEMP\s+|TEMPORARY\s+)?(TABLE|INDEX|VIEW)\s|ALTER\s+TABLE\s|DROP\s+TABLE\s)")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (top level, in functions and under TYPE_CHECKING alike), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)]
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "harness"]
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def floor(module: str) -> str:
    if module in GROUND:
        return "ground"
    if within(module, "harness.store"):
        return "store"
    if within(module, "harness.cli"):
        return "cli"
    if within(module, "harness.workflows"):
        return "workflows"
    if within(module, "dashboard"):
        return "dashboard"
    return "part"


def violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        me = module_name(path)
        mine = floor(me)
        for line, target in imports(path):
            if not (within(target, "harness") or within(target, "dashboard")):
                continue
            theirs = floor(target) if target not in GROUND else "ground"
            where = f"{path.relative_to(REPO)}:{line} imports {target}"
            if mine == "ground" and theirs != "ground":
                bad.append(f"{where}: the ground floor imports only the ground floor")
            elif mine == "store" and theirs not in ("ground", "store"):
                bad.append(f"{where}: the store imports nothing above it")
            elif (within(me, "harness.analysis") or mine == "dashboard") and any(
                    within(target, f) for f in FORBIDDEN_FOR_READERS):
                bad.append(f"{where}: analysis and the dashboard read the store; they never run or merge models")
            elif mine in ("part", "store", "ground") and theirs in ("cli", "workflows"):
                bad.append(f"{where}: parts never import the CLI or the workflows")
            elif mine == "workflows" and theirs == "cli":
                bad.append(f"{where}: workflows never import the CLI")
    return bad


def test_import_rules_hold() -> None:
    bad = violations(python_files("harness", "dashboard"))
    assert not bad, "\n".join(bad)


def test_import_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a store module importing the evaluator, and an analysis module importing merge, fail."""
    store_file = REPO / "harness" / "store" / "_probe_forbidden.py"
    analysis_file = REPO / "harness" / "analysis" / "_probe_forbidden.py"
    try:
        store_file.write_text("def f():\n    from harness.evaluate.runner import evaluate_model\n")
        analysis_file.write_text("from harness.merge import merge_to_folder\n")
        bad = violations([store_file, analysis_file])
    finally:
        store_file.unlink(missing_ok=True)
        analysis_file.unlink(missing_ok=True)
    assert any("the store imports nothing above it" in b for b in bad), bad
    assert any("never run or merge models" in b for b in bad), bad


def private_imports(files: list[Path]) -> list[str]:
    """`from harness.x import _name`: a module reaching into another's private helpers (give them a public home)."""
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("harness", "dashboard"):
                bad += [f"{path.name}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_no_module_imports_another_modules_private_names(tmp_path: Path) -> None:
    """What two modules share lives under public names (the overfitting signals' in harness/analysis/flags.py);
    the checker itself catches the private reach it replaced."""
    bad = private_imports(python_files("harness", "dashboard", "benchmarks", "scripts"))
    assert not bad, "\n".join(bad)
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from harness.analysis.overfit import Flag, _interval, bh_reject\n")
    assert private_imports([probe]) == ["probe.py:2 imports harness.analysis.overfit._interval"]


def sql_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value[:60]) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and SQL.search(n.value)]


def test_no_sql_outside_the_store() -> None:
    found = [f"{p.relative_to(REPO)}:{line}: {text!r}" for p in python_files("harness", "dashboard")
             if not within(module_name(p), "harness.store") for line, text in sql_strings(p)]
    assert not found, "SQL belongs in harness/store/:\n" + "\n".join(found)
    assert sql_strings(REPO / "harness" / "store" / "kv.py"), "the SQL detector finds nothing: it is broken"


def test_one_atomic_write_helper() -> None:
    """os.replace / os.rename (the atomic step) appear only in harness/atomic.py."""
    found = []
    for p in python_files("harness", "dashboard"):
        if p == REPO / "harness" / "atomic.py":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in ("replace", "rename")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                found.append(f"{p.relative_to(REPO)}:{node.lineno}")
    assert not found, "use harness.atomic: " + ", ".join(found)


# File names that stand in two places with one meaning (the same subject on two floors); any other repeat fails.
SHARED_NAMES = {
    "lineage": "lineage: the analysis's in-memory graph / the dashboard's Lineage page",
    "runs": "evaluation runs: the store's runs table / the dashboard's Runs page",
    "evolve": "evolve: the store's evolve tables / the evolve workflow",
    "evaluate": "evaluating: the judge's entry point / the evaluate workflow",
    "cards": "model cards: of a merge / of a zoo model",
    "instructions": "instruction data: the JSONL reader and clustering / the zoo's generated instruction mix",
}


def test_module_names_say_one_thing() -> None:
    """No two modules share a file name with different meanings (records.py x3 once cost every reader)."""
    seen: dict[str, list[str]] = {}
    for p in python_files("harness", "dashboard"):
        if p.stem not in ("__init__", "__main__"):
            seen.setdefault(p.stem, []).append(str(p.relative_to(REPO)))
    twice = {k: v for k, v in seen.items() if len(v) > 1 and k not in SHARED_NAMES}
    assert not twice, twice
    assert len(seen["records"]) == 1 and "views" not in seen


def test_one_model_identity(tmp_path: Path, results: Path) -> None:
    """Merge's resolver and evaluate's target resolution give a folder the same id, from one cache file."""
    from harness.evaluate.target import resolve_model
    from harness.hashing import hash_model_dir
    from harness.merge.resolve import Resolver
    from harness.paths import cache_dir
    from harness.store import Store
    from tests.factories import make_tiny_llama

    folder = make_tiny_llama(tmp_path / "m", seed=3)
    store = Store(results / "harness.duckdb")
    store.init()
    by_merge, _, _ = Resolver(store=store).identify(folder, None)
    by_eval = resolve_model(str(folder), store).model_id
    assert by_merge == by_eval == hash_model_dir(folder)
    assert [p.name for p in cache_dir().glob("*.json")] == ["model_ids.json"]


@pytest.mark.slow
def test_eval_plans_once(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness eval` of two models builds its plan (suite, tasks, data hash) once, not once per model and again
    in the CLI."""
    from typer.testing import CliRunner

    import harness.evaluate.plan as plan_module
    from harness.cli import app
    from tests.factories import make_tiny_llama

    calls = []
    real = plan_module.make_plan

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "make_plan", counting)
    import harness.evaluate.runner as runner

    monkeypatch.setattr(runner, "make_plan", counting)
    a, b = make_tiny_llama(tmp_path / "a", seed=1), make_tiny_llama(tmp_path / "b", seed=2)
    out = CliRunner().invoke(app, ["eval", str(a), str(b), "--suite", "mmlu", "--tasks", "mmlu_anatomy",
                                   "--limit", "2", "--device", "cpu", "--dtype", "float32", "--json"])
    assert out.exit_code == 0, out.output
    assert len(calls) == 1, calls
