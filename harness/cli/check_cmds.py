"""`harness baseline save` and `harness check`: the regression gate before a release."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.output import MERGE_SEED_HELP, print_json
from harness.errors import HarnessError


def register(app: typer.Typer) -> None:
    baseline_app = typer.Typer(help="Release baselines (results/baselines/NAME.json, meant to be committed).",
                               no_args_is_help=True)
    baseline_app.command("save")(baseline_save)
    app.add_typer(baseline_app, name="baseline")
    app.command("check")(check)


def _options(split: str | None, limit: int | None, tier: str | None, backend: str, batch_size: str,
             dtype: str, seed: int, device: str | None):
    from harness.cli.output import parse_batch_size
    from harness.evaluate.options import eval_options
    from harness.workflows.check import require_gate_backend

    require_gate_backend(backend)  # before eval_options, whose refusal names endpoint flags these commands lack
    return eval_options(split=split, backend=backend, limit=limit, tier=tier, seed=seed,
                        batch_size=parse_batch_size(batch_size), dtype=dtype, device=device)


def baseline_save(
    model: str = typer.Argument(..., help="Model folder, registered name or id."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite name."),
    name: str = typer.Option(..., "--name", help="Baseline name: writes results/baselines/NAME.json."),
    split: str = typer.Option(None, "--split", help="Suite split (default: the suite's default)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N documents per task."),
    tier: str = typer.Option(None, "--tier", help="smoke | quick | full."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf | vllm."),
    batch_size: str = typer.Option("16", "--batch-size", help="Batch size (scores can move with it: it is kept)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    seed: int = typer.Option(1234, "--seed", min=0, max=2**32 - 1, help="Seed."),
    device: str = typer.Option(None, "--device", help="hf: cpu, cuda ..."),
    merge_seed: int = typer.Option(0, "--merge-seed", min=0, max=2**32 - 1, help=MERGE_SEED_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an existing baseline file of that name."),
) -> None:
    """Evaluate a model (or reuse its cached run) and write a baseline file with per-sample scores."""
    from harness.store import Store
    from harness.workflows.check import save_baseline

    store = Store()
    path = save_baseline(model, suite, name, _options(split, limit, tier, backend, batch_size, dtype, seed, device),
                         store, force=force, merge_seed=merge_seed)
    typer.echo(f"baseline {name}: {path}")


def _tolerances(values: list[str]) -> tuple[float, dict[str, float]]:
    default, per_task = 0.02, {}
    for v in values:
        try:
            if "=" in v:
                task, num = v.split("=", 1)
                per_task[task.strip()] = float(num)
            else:
                default = float(v)
        except ValueError:
            raise HarnessError(f"--tolerance {v!r} is not a number or TASK=NUMBER",
                               "write e.g. --tolerance 0.02 --tolerance zoo_math_mc_public=0.05") from None
    return default, per_task


def check(
    candidate: str = typer.Option(..., "--candidate", help="The model to gate: folder, name or id."),
    baseline: str = typer.Option(..., "--baseline", help="A baseline name/file, or a model to compare against."),
    suite: str = typer.Option(None, "--suite", "-s", help="Suite (default: the baseline file's)."),
    tolerance: list[str] = typer.Option(
        [], "--tolerance", help="Allowed absolute drop: a number for every task, or TASK=NUMBER (repeatable)."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level after Holm correction."),
    suite_tolerance: float = typer.Option(
        0.01, "--suite-tolerance", help="Allowed drop of the pooled test over all items of the suite."),
    allow_mismatch: bool = typer.Option(
        False, "--allow-mismatch",
        help="Run although suite, settings or documents differ: compare what is common, list each difference."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Do not record a pass as a release selection."),
    split: str = typer.Option(None, "--split", help="With a baseline model: the split."),
    limit: int = typer.Option(None, "--limit", min=1, help="With a baseline model: at most N documents per task."),
    tier: str = typer.Option(None, "--tier", help="With a baseline model: smoke | quick | full."),
    backend: str = typer.Option("hf", "--backend", "-b", help="With a baseline model: hf | vllm."),
    device: str = typer.Option(None, "--device", help="hf: cpu, cuda ..."),
    merge_seed: int = typer.Option(0, "--merge-seed", min=0, max=2**32 - 1, help=MERGE_SEED_HELP),
    report: Path = typer.Option(None, "--report", help="Write the Markdown report here (for a PR comment)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --report file."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> None:
    """Gate a candidate against a baseline: exit 0 pass, 1 a significant drop beyond tolerance, 2 an error."""
    from harness.store import Store
    from harness.workflows.check import run_check

    default, per_task = _tolerances(tolerance)
    if report and (report.is_dir() or (report.exists() and not force)):
        raise HarnessError(f"--report {report} exists", "pass --force to replace it, or another path")
    opts = _options(split, limit, tier, backend, "16", "auto", 1234, device)
    outcome = run_check(candidate, baseline, suite, Store(), opts, tolerance=default, per_task=per_task,
                        alpha=alpha, allow_mismatch=allow_mismatch, promote=not no_promote, device=device,
                        suite_tolerance=suite_tolerance, merge_seed=merge_seed)
    if report:
        from harness.atomic import write_text_atomic

        write_text_atomic(report, outcome.report)
    if as_json:
        print_json(outcome.to_dict())
    else:
        typer.echo(outcome.report)
    if not outcome.result.passed:
        raise typer.Exit(1)
