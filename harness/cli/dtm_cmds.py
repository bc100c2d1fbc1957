"""`harness dtm CONFIG.yaml [--resume] [--seed N] [--json]`: a thin shell over harness.workflows.dtm.run_dtm."""

from __future__ import annotations

import typer

from harness.cli.output import print_json


def register(app: typer.Typer) -> None:
    app.command("dtm")(dtm)


def dtm(
    config: str = typer.Argument(..., help="Study config YAML (see docs/dtm.md)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped study from its first unfinished model."),
    seed: int = typer.Option(None, "--seed", help="Override the config's seed (one study per seed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the study (table, curve, timings) as JSON."),
) -> None:
    """Disperse-Then-Merge: cluster the data, fine-tune K sub-models, merge them, compare with the baselines."""
    from dataclasses import asdict

    from harness.evaluate.progress import quiet_engine_bars

    quiet_engine_bars()
    from harness.analysis.study_table import format_table
    from harness.workflows.dtm import run_dtm

    study = run_dtm(config, resume=resume, seed=seed, say=None if as_json else lambda s: typer.echo(s, err=True))
    if as_json:
        print_json({**asdict(study), "folder": str(study.folder)})
        return
    typer.echo(f"study {study.folder.name}{' (cached)' if study.cached else ''}: {study.folder}")
    typer.echo(format_table(study.rows))
    typer.echo("\nthe alignment-tax curve (vanilla fine-tuning on a fraction of the data)")
    typer.echo(format_table(study.curve))
    when = "the run that finished it" if study.cached else "this run"
    typer.echo(f"\nwall time of {when} (s): " + ", ".join(f"{k} {v:.1f}" for k, v in study.seconds.items()))
