"""`harness eval`, `harness leaderboard`, `harness serve`: thin shells over harness.evaluate and the store."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import typer

from harness.cli.output import parse_batch_size, print_json, print_table, stdout_to_stderr
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.evaluate.runner import RunResult


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("leaderboard")(leaderboard)
    app.command("serve")(serve)


def _fmt(v: Any, digits: int = 4) -> str:
    return "" if v is None or v != v else f"{v:.{digits}f}"


def _interval(lo: Any, hi: Any) -> str:
    return "" if lo is None or lo != lo else f"[{_fmt(lo, 3)}, {_fmt(hi, 3)}]"


def _print_result(res: RunResult) -> None:
    how = "reused" if res.reused else f"{res.cached_requests} cached / {res.new_requests} new requests"
    typer.echo(f"{res.model_name} on {res.suite}:{res.split} ({res.backend}) run {res.run_id}: {how}, "
               f"{res.seconds:.1f} s -> {res.results_dir}", err=True)
    print_table(None, ["task", "metric", "value", "stderr", "95% CI", "n"],
                [(s.task, s.metric, _fmt(s.value), _fmt(s.stderr), _interval(s.ci_low, s.ci_high), s.n)
                 for s in res.scores])


def eval_cmd(
    models: list[str] = typer.Argument(..., help="Model folders, registered names/ids, or merge recipe YAMLs."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite name (see suites/)."),
    split: str = typer.Option(None, "--split", help="Suite split (default: the suite's default_split)."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf | vllm | openai."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N documents per task."),
    tier: str = typer.Option(None, "--tier", help="A named size from suite.yaml: smoke | quick | full."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated subset of the split's tasks."),
    batch_size: str = typer.Option("16", "--batch-size", help="Batch size (an integer, or auto)."),
    device: str = typer.Option(None, "--device", help="hf: cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    max_length: int = typer.Option(None, "--max-length", min=1, help="Context length in tokens (default: model's)."),
    seed: int = typer.Option(1234, "--seed", min=0, max=2**32 - 1,
                              help="Seed for python, numpy, torch and few-shot sampling."),
    base_url: str = typer.Option(None, "--base-url", help="openai: server root, e.g. http://127.0.0.1:8000."),
    serve_it: bool = typer.Option(False, "--serve", help="openai: run `vllm serve` on the model for the run."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="openai: local tokenizer folder (default: model)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the folder."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) checkpoints."),
    hub: bool = typer.Option(False, "--hub", help="Run lm-eval's built-in tasks for the suite from the HF hub."),
    rerun: bool = typer.Option(False, "--rerun", help="Recompute a run that is already complete (uses the cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the request cache."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list (one object per model) on stdout."),
    judge: str = typer.Option(None, "--judge", help="Judge suites: the judge model (folder, name, or served name)."),
    judge_backend: str = typer.Option("hf", "--judge-backend", help="Judge suites: hf | vllm | openai."),
    judge_base_url: str = typer.Option(
        None, "--judge-base-url", help="Judge suites: the judge's OpenAI-compatible endpoint ($OPENAI_API_KEY)."),
    baseline: str = typer.Option(None, "--baseline", help="Judge suites: compare pairwise with this model."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", min=1, help="Judge suites: answer length."),
    judge_max_new_tokens: int = typer.Option(1024, "--judge-max-new-tokens", min=1,
                                             help="Judge suites: judgment length."),
) -> None:
    """Evaluate models on a suite: scores with intervals, stored with provenance; re-runs reuse earlier work."""
    from harness.evaluate.progress import quiet_engine_bars

    quiet_engine_bars()  # before lm-eval, datasets or transformers is imported: one bar per run, ours
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.progress import RequestBar, request_bars
    from harness.evaluate.runner import EvalOptions, evaluate_models, result_dict

    bo = BackendOptions(
        batch_size=parse_batch_size(batch_size), device=device, dtype=dtype,
        max_length=max_length,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, base_url=base_url, tokenizer=tokenizer,
    )
    if judge or baseline:
        from harness.evaluate.judge.run import JudgeOptions

        if not judge:
            raise HarnessError("--baseline compares answers through a judge", "add --judge MODEL")
        jopts = JudgeOptions(judge=judge, judge_backend=judge_backend, judge_base_url=judge_base_url,
                             baseline=baseline, backend=backend, backend_options=bo, limit=limit, tier=tier,
                             max_new_tokens=max_new_tokens, judge_max_new_tokens=judge_max_new_tokens)
        _judge_models(models, suite, jopts, as_json)
        return
    opts = EvalOptions(
        split=split, backend=backend, limit=limit, tier=tier, seed=seed, rerun=rerun, use_cache=not no_cache,
        serve=serve_it, hub=hub, tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks else None,
        backend_options=bo,
    )
    total = len(models)

    def started(i: int, ref: str) -> None:
        typer.echo(f"[{i + 1}/{total}] {_display_name(ref)}: {suite} ({backend})", err=True)

    done: list[Any] = []

    def on_done(ref: str, res: Any) -> None:
        if isinstance(res, HarnessError):
            if total > 1:
                typer.echo(f"error: {ref}: {res.line()}", err=True)
        elif not as_json:
            _print_result(res)
        done.append(res)
        if len(done) < total:
            started(len(done), models[len(done)])

    from harness.evaluate.plan import make_plan

    make_plan(suite, split, limit, tier, list(opts.tasks) if opts.tasks else None, hub)  # shared problems: once
    quiet = stdout_to_stderr() if as_json else contextlib.nullcontext()
    with quiet:
        started(0, models[0])
        with request_bars() as bars:
            opts = replace(opts, progress=lambda target: RequestBar(bars, f"[{len(done) + 1}/{total}] {target.name}"))
            results = evaluate_models(models, suite, opts, on_done=on_done)
    if as_json:
        print_json([
            {"model": m, **result_dict(r)} if not isinstance(r, HarnessError)
            else {"model": m, "status": "failed", "error": r.line()}
            for m, r in zip(models, results, strict=True)
        ])
    failures = [r for r in results if isinstance(r, HarnessError)]
    if failures:
        if len(failures) == len(results) and len(results) == 1:
            raise failures[0]
        raise typer.Exit(max(f.exit_code for f in failures))


def _display_name(ref: str) -> str:
    """A model's name in the store (a merged model's folder is named by its hash), else what the user typed."""
    from pathlib import Path

    from harness.store import Store

    store = Store()
    if not store.path.is_file():
        return ref
    path = Path(ref).expanduser()
    rec = store.find_model(str(path.resolve()) if path.is_dir() else ref)
    return rec.name if rec is not None and rec.name else ref


def _judge_models(models: list[str], suite: str, jopts: Any, as_json: bool) -> None:
    from harness.evaluate.judge.run import evaluate_judge

    out = []
    for ref in models:
        typer.echo(f"{ref}: {suite} judged by {jopts.judge} ({jopts.judge_backend})", err=True)
        res = evaluate_judge(ref, suite, jopts)
        out.append({"model": ref, "run_id": res.run_id, "parse_rate": res.parse_rate, "judgments": res.n_judgments,
                    "seconds": res.seconds, "scores": [s.__dict__ for s in res.scores]})
        if not as_json:
            typer.echo(f"run {res.run_id}: {res.n_judgments} judgments, parse rate {res.parse_rate:.0%}", err=True)
            print_table(None, ["task", "metric", "value", "stderr", "95% CI", "n"],
                        [(s.task, s.metric, _fmt(s.value), _fmt(s.stderr), _interval(s.ci_low, s.ci_high), s.n)
                         for s in res.scores])
    if as_json:
        print_json(out)


def leaderboard(
    suite: str = typer.Option(None, "--suite", "-s", help="Only this suite, one column per task."),
    metric: str = typer.Option(None, "--metric", help="Only this metric (e.g. acc)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV rows."),
) -> None:
    """Models x suites (or x tasks with --suite): the latest complete score of each, with its 95% interval."""
    from harness.evaluate.records import AGGREGATE_TASK
    from harness.store import Store

    store = Store.existing()
    df = store.leaderboard(suite)
    if metric:
        df = df[df["metric"] == metric]
    if as_json:
        print_json(df.to_dict(orient="records"))
        return
    if as_csv:
        df.to_csv(sys.stdout, index=False)
        return
    if df.empty:
        typer.echo("no complete runs yet" + (f" for suite {suite!r}" if suite else ""))
        return
    if not suite:  # one column per suite:split (the macro mean over its tasks)
        df = df[df["task"] == AGGREGATE_TASK]
    cells: dict[tuple[str, str], str] = {}  # keyed by model id: two models never share a row
    for r in df.itertuples():
        where = f"{r.suite}:{r.split}" if not suite else ("all" if r.task == AGGREGATE_TASK else r.task)
        cells[(r.model_id, f"{where} {r.metric}")] = f"{_fmt(r.value, 3)} {_interval(r.ci_low, r.ci_high)}".strip()
    columns = sorted({c for _, c in cells}, key=lambda c: (not c.startswith("all "), c))
    labels = _labels(df)
    models = sorted({m for m, _ in cells}, key=lambda m: (labels[m], m))
    rows = [[labels[m], *[cells.get((m, c), "") for c in columns]] for m in models]
    title = f"{suite}: value [95% CI]" if suite else "suites (macro mean over tasks): value [95% CI]"
    print_table(title, ["model", *columns], rows)


def _labels(df: Any) -> dict[str, str]:
    """model id -> its name, with the id's first 8 characters added where two models share a name (a store
    written before names were unique) and the short id where a model has none."""
    names = dict(zip(df["model_id"], df["model"], strict=False))
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {m: (n if n != m and counts[n] == 1 else f"{n if n != m else ''} ({m[:8]})".strip())
            for m, n in names.items()}


def serve(
    model: str = typer.Argument(..., help="Model folder or registered name."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    max_length: int = typer.Option(None, "--max-length", min=1, help="Context length in tokens (default: model's)."),
    max_model_len: int = typer.Option(None, "--max-model-len", min=1, help="Context length (default: the model's)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the folder."),
) -> None:
    """Serve a model with `vllm serve` on 127.0.0.1 (OpenAI API) until Ctrl-C or SIGTERM; for --backend openai."""
    import signal
    import time

    from harness.evaluate.serve import serving
    from harness.evaluate.target import resolve_model
    from harness.store import Store

    store = Store()
    store.init()
    target = resolve_model(model, store)
    if target.path is None:
        raise HarnessError(f"no local folder for {model!r}", "pass a model folder")
    # SIGTERM (kill, a process manager, a job started in the background where Ctrl-C is ignored) stops vllm as
    # cleanly as Ctrl-C, even while it starts; by default it would end this process and leave vllm running
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    typer.echo(f"starting vllm serve {target.path} on 127.0.0.1:{port} ...", err=True)
    with serving(target.path, port=port, name=target.name, dtype=dtype, max_model_len=max_model_len,
                 trust_remote_code=trust_remote_code) as server:
        typer.echo(f"serving {server.model_name} at {server.base_url}/v1 (log: {server.log_path}); Ctrl-C stops")
        try:
            while server.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            typer.echo("stopping", err=True)
            return
    raise HarnessError(f"vllm serve exited with code {server.proc.returncode}", f"see {server.log_path}",
                       exit_code=3)
