"""A study's table from stored runs: each recipe's score per suite task with a 95% interval, and its paired
difference against a reference row (the same documents, so the interval is that of the per-document difference).

    rows = table_rows({"vanilla": {"zoo_math:heldout": run}, ...}, order, store)
    print(format_table(rows))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.stats import Z95

if TYPE_CHECKING:
    from harness.store import Store

REFERENCE = "vanilla"


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


def study_cell(mine: dict[int, float], ref: dict[int, float]) -> dict[str, Any]:
    """One table cell: the mean of `mine` in points with its 95% half-width, and, over the documents both have,
    the paired difference from `ref` with its half-width."""
    from harness.stats import mean_stderr

    docs = sorted(mine)
    vals = [mine[d] for d in docs]
    mean, se = sum(vals) / len(vals), mean_stderr(vals)
    cell = {"n": len(vals), "value": 100 * mean, "ci95": 100 * Z95 * se}
    both = [d for d in docs if d in ref]
    if both:
        diffs = [mine[d] - ref[d] for d in both]
        cell["diff"] = 100 * sum(diffs) / len(diffs)
        cell["diff_ci95"] = 100 * Z95 * mean_stderr(diffs)
    return cell


def table_rows(runs: dict[str, dict], order: list[str], store: Store) -> list[dict[str, Any]]:
    """[{"row": label, "cells": {"suite/task/metric": {value, ci95, diff, diff_ci95, n}}}] in `order`."""
    cols = _columns(runs)
    with store.reading():
        need = [*order, *([REFERENCE] if REFERENCE in runs and REFERENCE not in order else [])]
        per = {(label, c): document_scores(store, runs[label][c[0]].run_id, c[1], c[2]) for label in need for c in cols}
    out = []
    for label in order:
        cells = {f"{s}/{t}/{m}": study_cell(per[(label, (s, t, m))], per.get((REFERENCE, (s, t, m)), {}))
                 for s, t, m in cols}
        out.append({"row": label, "cells": cells})
    return out


def curve_rows(runs: dict[str, dict], fractions: tuple[float, ...], store: Store) -> list[dict[str, Any]]:
    """The alignment-tax curve: vanilla fine-tuning on each fraction of the data, scored like the table."""
    labels = [f"vanilla {round(100 * f)}%" for f in fractions]
    rows = table_rows(runs, labels, store)
    for r, f in zip(rows, fractions, strict=True):
        r["fraction"] = f
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table: score ± 95% half-width, then the paired difference against vanilla."""
    if not rows:
        return ""
    cols = list(rows[0]["cells"])
    short = [c.split("/")[1] for c in cols]
    width = max(len(r["row"]) for r in rows) + 2
    head = "".ljust(width) + "".join(f"{s:>30}" for s in short)
    lines = [head, "".ljust(width) + "".join(f"{'score ± 95%   Δ vanilla ± 95%':>30}" for _ in short)]
    for r in rows:
        parts = []
        for c in cols:
            x = r["cells"][c]
            diff = "" if r["row"] == REFERENCE or "diff" not in x else f"{x['diff']:+5.1f} ± {x['diff_ci95']:4.1f}"
            parts.append(f"{x['value']:5.1f} ± {x['ci95']:4.1f}  {diff:>14}")
        lines.append(r["row"].ljust(width) + "".join(f"{p:>30}" for p in parts))
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
            cells += [f"{x['value']:.1f} ± {x['ci95']:.1f}", d]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
