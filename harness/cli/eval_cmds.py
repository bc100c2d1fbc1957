"""`harness eval`, `harness leaderboard`, `harness serve`: thin shells over harness.evaluate and the store."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from typing import Any

import typer

from harness.cli.eval_report import failure_summary, fmt, interval, print_judged, print_result, result_json
from harness.cli.output import MERGE_SEED_HELP, parse_batch_size, print_json, print_table, stdout_to_stderr
from harness.errors import HarnessError


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("leaderboard")(leaderboard)
    app.command("serve")(serve)


def eval_cmd(
    models: list[str] = typer.Argument(..., help="Model folders, registered names/ids, or merge recipe YAMLs."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite name (see suites/)."),
    split: str = typer.Option(None, "--split", help="Suite split (default: the suite's default_split)."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf | vllm | openai | ensemble (an ensemble folder)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N documents per task."),
    tier: str = typer.Option(None, "--tier", help="A named size from suite.yaml: smoke | quick | full."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated subset of the split's tasks."),
    batch_size: str = typer.Option("16", "--batch-size", help="Batch size (an integer, or auto)."),
    device: str = typer.Option(None, "--device", help="hf: cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    max_length: int = typer.Option(None, "--max-length", min=1, help="Context length in tokens (default: model's)."),
    seed: int = typer.Option(1234, "--seed", min=0, max=2**32 - 1,
                              help="Seed for python, numpy, torch and few-shot sampling."),
    merge_seed: int = typer.Option(0, "--merge-seed", min=0, max=2**32 - 1, help=MERGE_SEED_HELP),
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
    max_new_tokens: int = typer.Option(
        1024, "--max-new-tokens", min=1, help="Judge suites: answer length (FastChat's)."),
    judge_max_new_tokens: int = typer.Option(
        2048, "--judge-max-new-tokens", min=1, help="Judge suites: judgment length (FastChat's 2048)."),
    judge_option: list[str] = typer.Option(
        [], "--judge-option", help="Judge suites: a named deviation from FastChat (repeatable; docs/judge.md)."),
    answer_temperature: float = typer.Option(
        None, "--answer-temperature", help="Judge suites: one answer temperature (FastChat: per category)."),
    workers: int = typer.Option(1, "--workers", min=1, max=1024,
                                help="Ray actors, one engine each: the models spread over them, and groups of a "
                                     "model's tasks when they outnumber the models (docs/eval.md)."),
    ray_address: str = typer.Option(None, "--ray-address", help="A Ray cluster (default: a local Ray)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs one engine spans."),
    data_parallel_size: int = typer.Option(1, "--data-parallel-size", help="vllm: engine replicas per model (Ray)."),
    gpu_memory_utilization: float = typer.Option(
        None, "--gpu-memory-utilization", help="vllm: share of each GPU's memory (default 0.9)."),
) -> None:
    """Evaluate models on a suite: scores with intervals, stored with provenance; re-runs reuse earlier work."""
    from harness.evaluate.progress import quiet_engine_bars

    quiet_engine_bars()  # before lm-eval, datasets or transformers is imported: one bar per run, ours
    from harness.evaluate.options import eval_options
    from harness.evaluate.progress import RequestBar, request_bars
    from harness.workflows.evaluate import evaluate

    opts = eval_options(
        split=split, backend=backend, limit=limit, tier=tier, tasks=tasks, seed=seed, rerun=rerun,
        use_cache=not no_cache, serve=serve_it, hub=hub, batch_size=parse_batch_size(batch_size), device=device,
        dtype=dtype, max_length=max_length, base_url=base_url, tokenizer=tokenizer,
        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
    )
    jopts = None
    if judge or baseline:
        from harness.evaluate.judge.evaluate import JudgeOptions
        from harness.evaluate.judge.rules import rules_from

        if not judge:
            raise HarnessError("--baseline compares answers through a judge", "add --judge MODEL")
        jopts = JudgeOptions(judge=judge, judge_backend=judge_backend, judge_base_url=judge_base_url,
                             baseline=baseline, backend=backend, backend_options=opts.backend_options, limit=limit,
                             tier=tier, max_new_tokens=max_new_tokens, judge_max_new_tokens=judge_max_new_tokens,
                             rules=rules_from(judge_option, answer_temperature))
    total = len(models)
    done: list[Any] = []
    shown: set[int] = set()

    def started(ref: str) -> None:
        """The model's line, once: when its run starts (its bar, or a judged model's once it resolves) or its result
        comes (a reused run draws none), so a model refused before its run (no folder, no weights, no GGUF file)
        shows its error line alone."""
        if len(done) in shown:
            return
        shown.add(len(done))
        if jopts is not None:
            typer.echo(f"{_display_name(ref)}: {suite} judged by {jopts.judge} ({jopts.judge_backend})", err=True)
        else:
            typer.echo(f"[{len(done) + 1}/{total}] {_display_name(ref)}: {suite} ({backend})", err=True)

    def on_done(ref: str, res: Any) -> None:
        if isinstance(res, HarnessError):
            if total > 1:
                typer.echo(f"error: {ref}: {res.line()}", err=True)
        elif jopts is not None:
            if not as_json:
                print_judged(res)
        else:
            started(ref)  # a reused run, or one on Ray workers, draws no bar: its line comes with its result
            if not as_json:
                print_result(res)
        done.append(res)

    def bar(target: Any) -> RequestBar:
        started(models[len(done)])
        return RequestBar(bars, f"[{len(done) + 1}/{total}] {target.name}")

    if jopts is not None:  # a judge run draws no bar: its line comes once its model resolves
        jopts = replace(jopts, started=lambda target: started(models[len(done)]))
    quiet = stdout_to_stderr() if as_json else contextlib.nullcontext()
    with quiet:
        with request_bars() as bars:
            opts = replace(opts, progress=bar)
            if workers > 1 or ray_address:
                from harness.workflows.fanout import evaluate_fanout

                if jopts is not None:
                    raise HarnessError("--workers fans out lm-eval suites; judge suites run in one process",
                                       "drop --workers for mt_bench / vicuna_bench")

                results = evaluate_fanout(models, suite, opts, workers, ray_address, on_done=on_done,
                                          merge_seed=merge_seed).results
            else:
                results = evaluate(models, suite, opts, judge=jopts, on_done=on_done, merge_seed=merge_seed).results
    if as_json:
        print_json([result_json(m, r, jopts is not None) for m, r in zip(models, results, strict=True)])
    failures = [r for r in results if isinstance(r, HarnessError)]
    if failures:
        if len(failures) == len(results) and len(results) == 1:
            raise failures[0]
        typer.echo(failure_summary(models, results), err=True)  # last: the error lines above scroll away
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


def leaderboard(
    suite: str = typer.Option(None, "--suite", "-s", help="Only this suite, one column per task."),
    metric: str = typer.Option(None, "--metric", help="Only this metric (e.g. acc)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV rows."),
    methods: bool = typer.Option(False, "--methods", help="With --suite: hand recipes, PS, DFS and PS+DFS as "
                                 "methods, each pick against the best hand recipe, paired (docs/evolve.md)."),
    chosen_on: str = typer.Option("search", "--chosen-on", help="--methods: the split picks are made on."),
    compared_on: str = typer.Option("heldout", "--compared-on", help="--methods: the split compared."),
) -> None:
    """Models x suites (or x tasks with --suite): the suite score of each (the suite's own aggregation, as the
    dashboard shows it, from the complete run that scored the most documents, then the latest), with its 95%
    interval."""
    if methods:
        _methods_board(suite, chosen_on, compared_on, as_json)
        return
    from pandas.api.types import is_integer_dtype

    from harness.analysis.evidence import suite_twins
    from harness.run_questions import run_questions
    from harness.store import AGGREGATE_TASK, Store
    from harness.store import frames as views
    from harness.suites import score_rules

    store = Store.existing()
    if suite:
        _require_known_suite(store, suite)
    defaults = suite_twins(None)[1]
    board = views.suite_board(store, defaults, score_rules(), run_questions)  # a store not yet filled: as if filled
    if suite:
        tasks = store.leaderboard(suite, defaults)  # the same run of each (model, suite, split) as the board's
        board = board[board["suite"] == suite]
        # the task rows of the runs with a suite score (a judge run without a rating has none)
        tasks = tasks[(tasks["task"] != AGGREGATE_TASK) & tasks["run_id"].isin(set(board["run_id"]))]
        df = tasks.merge(board, how="outer") if not tasks.empty else board
        df = df[[c for c in board.columns if c in df.columns]]
        # the task rows have no task count: its column, float after the merge (2.0), is an integer one with nulls
        df = df.astype({c: "Int64" for c in df.columns if is_integer_dtype(board[c])})
    else:
        df = board
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
    cells: dict[tuple[str, str], str] = {}  # keyed by model id: two models never share a row
    splits = df["split"].nunique() > 1  # --suite: a column per split and task (a judge's ratings are its own)
    for r in df.itertuples():
        where = (f"{r.split} {r.task}" if splits else r.task) if suite else f"{r.suite}:{r.split}"
        cells[(r.model_id, f"{where} {r.metric}")] = f"{fmt(r.value, 3)} {interval(r.ci_low, r.ci_high)}".strip()
    columns = sorted({c for _, c in cells}, key=lambda c: (not c.startswith("all "), c))
    labels = _labels(df)
    models = sorted({m for m, _ in cells}, key=lambda m: (labels[m], m))
    rows = [[labels[m], *[cells.get((m, c), "") for c in columns]] for m in models]
    title = f"{suite}: value [95% CI]" if suite else "suite scores (each suite's own aggregation): value [95% CI]"
    print_table(title, ["model", *columns], rows)


def _methods_board(suite: str | None, chosen_on: str, compared_on: str, as_json: bool) -> None:
    from harness.analysis.search_methods import stored_comparison
    from harness.store import Store

    if not suite or chosen_on == compared_on:
        raise HarnessError("--methods compares on one suite between two splits",
                           "pass --suite NAME and different --chosen-on / --compared-on splits")
    store = Store.existing()
    _require_known_suite(store, suite)
    table = stored_comparison(store, suite, chosen_on, compared_on)
    if as_json:
        print_json(table.to_dict(orient="records"))
        return
    if table.empty:
        typer.echo(f"no hand recipe and searched merge both scored on {suite}:{chosen_on} and {suite}:{compared_on}")
        return
    print_table(f"{suite}: picks chosen on {chosen_on}, compared on {compared_on} (points, paired 95% CI)",
                ["method", "model", chosen_on, compared_on, "vs best hand", "95% CI", "n"],
                [[r["method"], r["model_id"][:12] + (" *" if r["in_sample"] else ""), fmt(r[chosen_on], 1),
                  fmt(r[compared_on], 1), f"{r['vs best hand']:+.1f}", f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]",
                  r["n"]] for r in table.to_dict(orient="records")])
    if table["in_sample"].any():
        typer.echo(f"* it or an ancestor was selected on {compared_on}'s questions (declared finalists, say): "
                   "in-sample there; compare on another split (e.g. --compared-on twin)")


def _require_known_suite(store: Any, suite: str) -> None:
    """A --suite that is neither a suite on disk nor one with stored runs is a typo: refused, not an empty board."""
    from harness.suites import list_suites, unknown_suite

    names = list_suites()
    if suite not in names and not store.list_runs(suite=suite, status=None):
        raise unknown_suite(suite, names)


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
    max_length: int = typer.Option(
        None, "--max-length", "--max-model-len", min=1, help="Context length in tokens (default: the model's)."),
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
    with serving(target.path, port=port, name=target.name, dtype=dtype, max_model_len=max_length,
                 trust_remote_code=trust_remote_code) as server:
        typer.echo(f"serving {server.model_name} at {server.base_url}/v1 (log: {server.log_path}); Ctrl-C stops")
        try:
            while server.alive():
                time.sleep(1)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a server, so a clean exit 0
            from harness.cli.interrupts import handled

            handled()
            typer.echo("stopping", err=True)
            return
    raise HarnessError(f"vllm serve exited with code {server.proc.returncode}", f"see {server.log_path}",
                       exit_code=3)
