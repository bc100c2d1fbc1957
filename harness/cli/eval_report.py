"""What `harness eval` prints: a run's scores and suite score, a judged run's, a model's --json object, and the
closing line that names each model that failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from harness.cli.output import print_table
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.evaluate.runner import RunResult


def fmt(v: Any, digits: int = 4) -> str:
    return "" if v is None or v != v else f"{v:.{digits}f}"


def interval(lo: Any, hi: Any) -> str:
    return "" if lo is None or lo != lo else f"[{fmt(lo, 3)}, {fmt(hi, 3)}]"


def print_result(res: RunResult) -> None:
    how = "reused" if res.reused else f"{res.cached_requests} cached / {res.new_requests} new requests"
    typer.echo(f"{res.model_name} on {res.suite}:{res.split} ({res.backend}) run {res.run_id}: {how}, "
               f"{res.seconds:.1f} s -> {res.results_dir}", err=True)
    from harness.store import AGGREGATE_TASK

    print_table(None, ["task", "metric", "value", "stderr", "95% CI", "n"],
                [(f"{s.task} (plain mean)" if s.task == AGGREGATE_TASK else s.task, s.metric, fmt(s.value),
                  fmt(s.stderr), interval(s.ci_low, s.ci_high), s.n) for s in res.scores])
    line = suite_score_line(res)
    if line:
        typer.echo(line)
    from harness.evaluate.cuts import cut_warning

    warning = cut_warning(res.cuts)
    if warning:
        typer.echo(warning, err=True)


def suite_score_line(res: RunResult) -> str | None:
    """The run's suite score as the leaderboard and the dashboard show it (the suite's own aggregation, lm-eval's
    group: mmlu's is the size-weighted mean, not the `_aggregate` row's plain mean of its tasks); when the store's
    run of this model, suite and split is another one (frames.CHOSEN_RUNS_SQL: one that scored more documents, or
    as many and later), that run's score, so a --limit run's figure is never read as the leaderboard's."""
    from harness.run_questions import run_questions
    from harness.store import Store
    from harness.store import frames as views
    from harness.suites import score_rules

    store = Store()
    if not store.path.is_file():
        return None
    rules = score_rules()
    board = views.suite_scores(store, rules=rules, questions=run_questions)
    rows = board.query("run_id == @res.run_id")
    if rows.empty:
        shown = board.query("model_id == @res.model_id and suite == @res.suite and split == @res.split")
        if shown.empty:
            return None
        r = shown.iloc[0]
        return (f"not on the leaderboard: it shows run {r.run_id} of {res.suite}:{res.split} (suite score {r.metric} "
                f"{fmt(r.value)} {interval(r.ci_low, r.ci_high)}, n {r.n}), the complete run that scored the most "
                "documents")
    r, rule = rows.iloc[0], rules.get(res.suite)
    how = "size-weighted mean" if rule is None or rule.weight_by_size else "plain mean"
    return (f"suite score {res.suite}:{res.split} {r.metric} {fmt(r.value)} {interval(r.ci_low, r.ci_high)} "
            f"(the {how} of {r.tasks} tasks, n {r.n}; what the leaderboard shows)")


def result_json(model: str, res: Any, judged: bool) -> dict[str, Any]:
    from harness.evaluate.runner import result_dict

    if isinstance(res, HarnessError):
        return {"model": model, "status": "failed", "error": res.line()}
    if judged:
        return {"model": model, "run_id": res.run_id, "parse_rate": res.parse_rate, "judgments": res.n_judgments,
                "seconds": res.seconds, "scores": [s.__dict__ for s in res.scores]}
    return {"model": model, **result_dict(res)}


def print_judged(res: Any) -> None:
    typer.echo(f"run {res.run_id}: {res.n_judgments} judgments, parse rate {res.parse_rate:.0%}", err=True)
    cut = next((s.value for s in res.scores if s.task == "overall" and s.metric == "prompt_cut_rate"), None)
    if cut:
        typer.echo(f"warning: {cut:.0%} of the judgments read a prompt cut from its start (the judge's or the "
                   "model's context is too short for it plus its new tokens): use a model with a longer context "
                   "or fewer --judge-max-new-tokens / --max-new-tokens", err=True)
    print_table(None, ["task", "metric", "value", "stderr", "95% CI", "n"],
                [(s.task, s.metric, fmt(s.value), fmt(s.stderr), interval(s.ci_low, s.ci_high), s.n)
                 for s in res.scores])


def failure_summary(models: Sequence[str], results: Sequence[Any], words: int = 6) -> str | None:
    """One line naming each model that failed with the first `words` words of its problem, e.g. `2 of 5 models
    failed: MISSING (no model folder at MISSING), zoo-bad (...)`: the `error: MODEL: ...` lines printed as failures
    happen scroll away under a long evaluation's progress. None when every model succeeded."""
    failed = [(m, r.problem.split()) for m, r in zip(models, results, strict=True) if isinstance(r, HarnessError)]
    if not failed:
        return None
    named = [f"{m} ({' '.join(p[:words])}{' ...' if len(p) > words else ''})" for m, p in failed]
    return f"{len(failed)} of {len(results)} models failed: " + ", ".join(named)
