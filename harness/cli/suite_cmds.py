"""`harness suites`: where the shipped suites are (in a checkout or inside the installed package) and their names."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    suites_app = typer.Typer(help="The benchmark suites harness ships (and yours in $HARNESS_SUITES).",
                             no_args_is_help=True)
    suites_app.command("path")(path)
    suites_app.command("list")(list_cmd)
    app.add_typer(suites_app, name="suites")


def path() -> None:
    """Print the folder of the shipped suites (copy one from there to start your own)."""
    from harness.paths import suites_dir

    typer.echo(str(suites_dir()))


def list_cmd() -> None:
    """Print every suite's name, one per line."""
    from harness.suites import list_suites

    for name in list_suites():
        typer.echo(name)
