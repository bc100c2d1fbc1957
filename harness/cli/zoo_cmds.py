"""`harness zoo`: build the zoo (tiny, genuinely skilled local models), write its suites, print its score table."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.output import print_json, print_table


def register(app: typer.Typer) -> None:
    zoo_app = typer.Typer(help="The zoo: a tiny model family trained locally, with real skills (docs/zoo.md).",
                          no_args_is_help=True)
    zoo_app.command("build")(build)
    zoo_app.command("report")(report)
    zoo_app.command("suites")(suites)
    zoo_app.command("compare")(compare)
    app.add_typer(zoo_app, name="zoo")


def build(
    out: Path = typer.Option(None, "--out", help="Folder for the family. Default: results/zoo."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads (1: fastest on a busy 2-core machine)."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Worker processes for the experts (each --threads threads)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Family seed (0 is the default zoo)."),
    register_models: bool = typer.Option(True, "--register/--no-register", help="Register the models in the store."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build the zoo family deterministically (cached: a second call returns at once) and register it."""
    import time

    from harness.zoo.build import build_zoo
    from harness.zoo.register import register_zoo

    start = time.perf_counter()
    built = build_zoo(out, threads=threads, seed=seed, progress=not as_json, jobs=jobs)
    ids = register_zoo(built) if register_models else {}
    wall = time.perf_counter() - start
    rows = [{"name": b.name, "path": str(b.path), "model_id": ids.get(b.name), "params": b.n_params,
             "train_seconds": round(b.seconds, 1), "cached": b.cached} for b in built]
    if as_json:
        print_json({"seconds": round(wall, 1), "models": rows})
        return
    print_table(f"zoo ({wall:.1f} s)", ["name", "id", "params", "trained (s)", "cached", "path"],
                [(r["name"], (r["model_id"] or "")[:12], r["params"], r["train_seconds"], r["cached"], r["path"])
                 for r in rows])


def report(
    zoo: Path = typer.Option(None, "--zoo", help="Folder of a built zoo. Default: results/zoo."),
    limit: int = typer.Option(None, "--limit", min=1, help="Documents per task (default: all 300)."),
    merges: bool = typer.Option(True, "--merges/--no-merges", help="Add the labelled reference merges."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score every zoo model on every zoo suite split with lm-eval (multiple choice and generation)."""
    from dataclasses import asdict

    from harness.paths import zoo_dir
    from harness.zoo.report import score_table, table_rows

    cells = score_table(Path(zoo) if zoo else zoo_dir(), limit=limit, with_merges=merges)
    if as_json:
        print_json([asdict(c) for c in cells])
        return
    for form, title in (("mc", "multiple choice (acc)"), ("gen", "generation (exact match)")):
        columns, rows = table_rows(cells, form)
        print_table(f"zoo scores, {title}, % +- standard error", columns, rows)


def suites(
    out: Path = typer.Option(None, "--out", help="Where to write them. Default: suites/zoo in the checkout."),
) -> None:
    """Regenerate the zoo suites' data and task YAMLs (deterministic: the committed files come back unchanged)."""
    from harness.paths import suites_dir
    from harness.zoo.suitegen import write_suites

    for folder in write_suites(Path(out) if out else suites_dir() / "zoo"):
        typer.echo(str(folder))


def compare(
    model: str = typer.Argument(..., help="A zoo member or reference merge, e.g. zoo-logic or ref-ta-math+lang."),
    against: str = typer.Option("zoo-base", "--against", help="The model it is compared with, item by item."),
    suite: list[str] = typer.Option(None, "--suite", help="Zoo suite(s) to score (default: all four)."),
    zoo: Path = typer.Option(None, "--zoo", help="Folder of a built zoo. Default: results/zoo."),
    limit: int = typer.Option(None, "--limit", min=1, help="Items per split (default: all 300)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads (1: fastest on a busy 2-core machine)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Paired comparison of two zoo models on every split and form (fast in-process scorer, all items)."""
    from dataclasses import asdict

    import torch

    from harness.paths import zoo_dir
    from harness.zoo.paired import compare as compare_models
    from harness.zoo.report import ZOO_SUITE_NAMES

    torch.set_num_threads(threads)
    rows = compare_models(Path(zoo) if zoo else zoo_dir(), model, against, tuple(suite or ZOO_SUITE_NAMES),
                          limit=limit)
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    print_table(f"{model} vs {against}, % (paired differences +- standard error)",
                ["suite", "split", "form", "n", model, against, "difference"],
                [(r.suite, r.split, r.form, r.n, f"{r.model:.1f}", f"{r.against:.1f}", f"{r.diff:+.1f} +- {r.se:.1f}")
                 for r in rows])
