"""`harness evolve CONFIG.yaml [--resume] [--json]`: a thin shell over harness.workflows.evolve.run_evolve."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from harness.cli.output import print_json

if TYPE_CHECKING:
    from harness.evolve.loop import EvolveResult, GenerationReport


def register(app: typer.Typer) -> None:
    app.command("evolve")(evolve)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


class LiveView:
    """One row per generation (best, mean, best so far, sigma, candidates per minute, held-out check)."""

    COLUMNS = ("gen", "best", "+- se", "mean", "best so far", "sigma", "cand/min", "scored", "reused", "failed",
               "held-out")

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.rows: list[tuple[str, ...]] = []
        self.live = Live(self.table(), console=Console(stderr=True), refresh_per_second=2)
        self.started = False

    def table(self) -> Any:
        from rich.table import Table

        t = Table(title="harness evolve")
        for c in self.COLUMNS:
            t.add_column(c, justify="right")
        for r in self.rows[-30:]:
            t.add_row(*r)
        return t

    def update(self, r: GenerationReport) -> None:
        self.rows.append((str(r.generation), _fmt(r.best), _fmt(r.stderr), _fmt(r.mean), _fmt(r.best_so_far),
                          _fmt(r.sigma), f"{r.per_minute:.1f}", str(r.evaluated), str(r.reused), str(r.failed),
                          _fmt(r.heldout)))
        if not self.started:  # the table appears with the first generation (not before config errors)
            self.live.start()
            self.started = True
        self.live.update(self.table())

    def stop(self) -> None:
        if self.started:
            self.live.stop()


def _print_result(res: EvolveResult) -> None:
    from harness.cli.output import print_table

    typer.echo(f"evolve run {res.evolve_id}: {res.status}, {res.generations} generations, "
               f"{res.evaluations} candidates, {res.wall_s:.1f}s")
    typer.echo(f"best {res.best_model_id and res.best_model_id[:12]} fitness {_fmt(res.best_fitness, 4)}"
               + (f": {res.path}" if res.path else ""))
    if res.stages:
        typer.echo(f"PS+DFS: PS run {res.stages[0]}, then DFS run {res.stages[1]} (this result)")
    rows = [(r["suite"], r["split"], s["task"], s["metric"], _fmt(s["value"]), f"[{_fmt(s['ci_low'])}, "
             f"{_fmt(s['ci_high'])}]", s["n"]) for r in res.runs for s in r["scores"]]
    if rows:
        print_table("best candidate", ("suite", "split", "task", "metric", "value", "95% CI", "n"), rows)


def evolve(
    config: str = typer.Argument(..., help="Evolve config YAML (see docs/evolve.md)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run of this config from the store."),
    as_json: bool = typer.Option(False, "--json", help="Print the result (best, history, final runs) as JSON."),
) -> None:
    """Search merge parameters with CMA-ES; check the best merge on the held-out split."""
    from harness.evaluate.progress import quiet_engine_bars

    quiet_engine_bars()  # the live view is the progress display; lm-eval's per-candidate tqdm bars are noise
    from harness.workflows.evolve import run_evolve

    if as_json:
        print_json(run_evolve(config, resume=resume).as_json())
        return
    view = LiveView()
    try:
        res = run_evolve(config, resume=resume, on_generation=view.update)
    finally:
        view.stop()
    _print_result(res)
