"""`harness dashboard` (the read-only Streamlit leaderboard) and `harness overfit` (the overfitting flags)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import typer

from harness.cli.output import print_json, print_table
from harness.errors import HarnessError


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
    app.command("overfit")(overfit)


def _existing_store():
    from harness.store import Store

    return Store.existing()


def dashboard(
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on (bound to 127.0.0.1 only)."),
) -> None:
    """Serve the read-only leaderboard dashboard on http://127.0.0.1:PORT (Ctrl-C stops it)."""
    from harness.paths import dashboard_dir

    store = _existing_store()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise HarnessError(f"port {port} on 127.0.0.1 is in use", "pass another --port") from exc
    app_file = dashboard_dir() / "app.py"
    if not app_file.is_file():
        raise HarnessError(f"the dashboard is missing ({app_file})", "reinstall harness from a full checkout")
    os.environ["HARNESS_DB"] = str(store.path.resolve())
    _analyse_beside_the_server(app_file.parent / "snapshots.py", os.environ["HARNESS_DB"])
    typer.echo(f"dashboard on http://127.0.0.1:{port} over {store.path} (read-only)", err=True)
    argv = [sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]  # no Deploy button or developer menu: a read-only viewer
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # the server replaces this process: signals reach it directly


def _analyse_beside_the_server(script: Path, db: str) -> None:
    """Start the overfitting analysis of the store in its own process while the server boots, so the first page
    that shows flags finds it kept on disk (or waits only for the rest). Best effort: the pages compute it
    themselves when this fails. A double fork: the analysis is nobody's child once started, so no zombie waits on
    the server (which replaces this process) to be reaped."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        os.waitpid(pid, 0)
        return
    try:  # the first child: start the analysis in a new session, then leave at once
        if os.fork() == 0:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execv(sys.executable, [sys.executable, str(script), db])
    finally:
        os._exit(0)


def overfit(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every flag with its evidence)."),
    min_severity: str = typer.Option("low", "--min-severity", help="info, low, medium or high."),
    model: str = typer.Option(None, "--model", help="Only flags of this model (name, id or path)."),
    truth: str = typer.Option(None, "--truth", help="JSON {model name: true|false|null}: count true/false flags."),
    show_coverage: bool = typer.Option(False, "--coverage", help="List every (model, suite): checked (with the "
                                       "smallest excess it could flag) or why not."),
) -> None:
    """Flag benchmark overfitting across merge lineages: exposure, twin gaps, lineage divergence, specialisation."""

    from harness.analysis.coverage import coverage, headline
    from harness.analysis.evidence import gather
    from harness.analysis.overfit import SEVERITIES, THRESHOLDS, analyse_data, confusion
    from harness.errors import did_you_mean

    if min_severity not in SEVERITIES:
        raise HarnessError(f"unknown severity {min_severity!r}{did_you_mean(min_severity, SEVERITIES)}",
                           f"use one of: {', '.join(SEVERITIES)}")
    store = _existing_store()
    data = gather(store)
    flags = analyse_data(data)
    cover = coverage(data, THRESHOLDS, flags)
    if model:
        model_id = store.get_model(model).model_id
        flags = [f for f in flags if f.model_id == model_id]
        cover = [c for c in cover if c.model_id == model_id]
    flags = [f for f in flags if f.rank >= SEVERITIES.index(min_severity)]
    known = _read_truth(truth) if truth else None
    if as_json:
        if known is None and not show_coverage:
            print_json([f.to_dict() for f in flags])
            return
        out: dict = {"flags": [f.to_dict() for f in flags]}
        if known is not None:
            out["confusion"] = confusion(flags, known, min_severity)
        if show_coverage:
            out["coverage"] = [c.to_dict() for c in cover]
        print_json(out)
        return
    print_table(f"{len(flags)} overfitting flags", ["severity", "signal", "model", "suite", "explanation"],
                [(f.severity, f.signal, f.model, f.suite, f.explanation) for f in flags])
    if show_coverage:
        print_table("coverage", ["model", "suite", "status", "flagged", "detail"],
                    [(c.model, c.suite, c.status, "yes" if c.flagged else "", c.detail) for c in cover])
    typer.echo(f"coverage: {headline(cover)}" + ("" if show_coverage else " (--coverage lists them)"))
    if known is not None:
        c = confusion(flags, known, min_severity)
        typer.echo(f"against {truth}: {c['true_flags']} true flags of {c['positives']} positives "
                   f"(missed: {', '.join(c['missed']) or 'none'}), {c['false_flags']} false flags of "
                   f"{c['negatives']} negatives (false: {', '.join(c['false']) or 'none'})")


def _read_truth(path: str) -> dict[str, bool | None]:
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read the truth file {path}: {type(exc).__name__}",
                           'pass a JSON object of model name -> true/false/null, e.g. {"zoo-overfit": true}') from None
    if not isinstance(data, dict) or not all(v in (True, False, None) for v in data.values()):
        raise HarnessError(f"the truth file {path} is not a JSON object of model name -> true/false/null",
                           'write it as e.g. {"zoo-overfit": true, "zoo-math": false}')
    return data
