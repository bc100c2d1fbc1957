"""A study's table from stored runs: each recipe's score per suite task with its run's stored 95% interval (the one
`harness leaderboard --suite` shows: Wilson's for 0/1 scores, harness.stats.summarize), and its paired difference
against a reference row (the same documents, so the interval is the t interval of the per-document differences).

    rows = table_rows({"vanilla": {"zoo_math:heldout": run}, ...}, order, store)
    print(format_table(rows))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store import Store

REFERENCE = "vanilla"
TABLE_VERSION = 3  # 3: a difference's half-width is the t interval's (2: z * stderr); 2: a cell's interval is its
# run's stored one (ci_low, ci_high); 1 printed value ± z * stderr


def _columns(runs: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(suite, task, metric) for every task of the reference's runs (the _aggregate rows left out)."""
    ref = runs.get(REFERENCE) or next(iter(runs.values()))
    return [(suite, s.task, s.metric) for suite, res in ref.items() for s in res.scores if s.task != "_aggregate"]


def document_scores(store: Store, run_id: str, task: str, metric: str) -> dict[int, float]:
    """Each document's score on `metric`: the mean of its scored sample rows (as the per-document index keeps it)."""
    df = store.samples(run_id, task)
    df = df[(df["metric"] == metric) & df["score"].notna()]
    means = df.groupby(df["doc_id"].astype(int), sort=True)["score"].mean()
    return {int(d): float(v) for d, v in means.items()}


def study_cell(mine: dict[int, float], ref: dict[int, float],
               interval: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """One table cell: the mean of `mine` in points with its 95% interval (`interval`, the run's stored one, else
    summarize's of the document scores: the function the stored one comes from), and, over the documents both
    have, the paired difference from `ref` with its t interval's half-width (n - 1 degrees of freedom)."""
    from harness.stats import summarize, t_half_width

    docs = sorted(mine)
    vals = [mine[d] for d in docs]
    if None in interval:
        est = summarize(vals)
        interval = (est.ci_low, est.ci_high)
    low, high = interval
    cell = {"n": len(vals), "value": 100 * sum(vals) / len(vals), "ci_low": 100 * low, "ci_high": 100 * high}
    both = [d for d in docs if d in ref]
    if both:
        diffs = [mine[d] - ref[d] for d in both]
        cell["diff"] = 100 * sum(diffs) / len(diffs)
        cell["diff_ci95"] = 100 * t_half_width(diffs)
    return cell


def table_rows(runs: dict[str, dict], order: list[str], store: Store) -> list[dict[str, Any]]:
    """[{"row": label, "cells": {"suite/task/metric": {value, ci95, diff, diff_ci95, n}}}] in `order`."""
    cols = _columns(runs)
    with store.reading():
        need = [*order, *([REFERENCE] if REFERENCE in runs and REFERENCE not in order else [])]
        per = {(label, c): document_scores(store, runs[label][c[0]].run_id, c[1], c[2]) for label in need for c in cols}
    out = []
    for label in order:
        cells = {f"{s}/{t}/{m}": study_cell(per[(label, (s, t, m))], per.get((REFERENCE, (s, t, m)), {}),
                                            _stored_interval(runs[label][s], t, m))
                 for s, t, m in cols}
        out.append({"row": label, "cells": cells})
    return out


def _stored_interval(run: Any, task: str, metric: str) -> tuple[float | None, float | None]:
    score = run.score(task, metric)
    return (None, None) if score is None else (score.ci_low, score.ci_high)


def curve_rows(runs: dict[str, dict], fractions: tuple[float, ...], store: Store) -> list[dict[str, Any]]:
    """The alignment-tax curve: vanilla fine-tuning on each fraction of the data, scored like the table."""
    labels = [f"vanilla {round(100 * f)}%" for f in fractions]
    rows = table_rows(runs, labels, store)
    for r, f in zip(rows, fractions, strict=True):
        r["fraction"] = f
    return rows


def interval(cell: dict[str, Any]) -> str:
    """A cell's score and its 95% interval in points: `0.0 [0.0, 39.0]`."""
    return f"{cell['value']:.1f} [{cell['ci_low']:.1f}, {cell['ci_high']:.1f}]"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table: score [95% interval], then the paired difference against vanilla ± its half-width."""
    if not rows:
        return ""
    cols = list(rows[0]["cells"])
    short = [c.split("/")[1] for c in cols]
    width = max(len(r["row"]) for r in rows) + 2
    head = "".ljust(width) + "".join(f"{s:>36}" for s in short)
    lines = [head, "".ljust(width) + "".join(f"{'score [95%]   Δ vanilla ± 95%':>36}" for _ in short)]
    for r in rows:
        parts = []
        for c in cols:
            x = r["cells"][c]
            diff = "" if r["row"] == REFERENCE or "diff" not in x else f"{x['diff']:+5.1f} ± {x['diff_ci95']:4.1f}"
            parts.append(f"{interval(x)}  {diff:>14}")
        lines.append(r["row"].ljust(width) + "".join(f"{p:>36}" for p in parts))
    return "\n".join(lines)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0]["cells"])
    head = "| recipe | " + " | ".join(f"{c.split('/')[1]} | Δ vs vanilla" for c in cols) + " |"
    sep = "|---|" + "---:|---:|" * len(cols)
    lines = [head, sep]
    for r in rows:
        cells = []
        for c in cols:
            x = r["cells"][c]
            d = "" if r["row"] == REFERENCE or "diff" not in x else f"{x['diff']:+.1f} ± {x['diff_ci95']:.1f}"
            cells += [interval(x), d]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
