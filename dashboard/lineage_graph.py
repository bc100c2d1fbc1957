"""Lineage views for the dashboard, without Streamlit: a model's chains of merges with public and twin scores, and
its ancestry as a Graphviz DOT graph (rendered by st.graphviz_chart)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.analysis.evidence import Data

SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#ffd92f", None: "#c7e9c0"}
RAMP = ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")


def paths_to_roots(data: Data, model_id: str, limit: int = 6, max_len: int = 500) -> list[list[str]]:
    """Up to `limit` chains from a root down to the model (deepest parents explored first)."""
    depth = dict(zip(data.models["model_id"].tolist(), data.models["depth"].tolist(), strict=True))
    out: list[list[str]] = []
    stack: list[list[str]] = [[model_id]]
    while stack and len(out) < limit:
        path = stack.pop()
        ps = data.graph.parents.get(path[-1], ())
        if not ps or len(path) >= max_len:
            out.append(path[::-1])
            continue
        for p in sorted(ps, key=lambda p: depth.get(p, 0)):  # deepest pushed last, popped first
            if p not in path:
                stack.append([*path, p])
    return out


def chains(data: Data, gaps: pd.DataFrame, paths: list[list[str]], suite: str, kind: str) -> pd.DataFrame:
    """One row per (chain, step) of `paths` (paths_to_roots): the model on it, its public and twin score and their
    gap as the overfitting analysis has them (`gaps`: harness.analysis.twin_gaps, paired through the twin's map over
    the items both runs scored, as `harness overfit` flags on), and an in-sample mark."""
    import pandas as pd

    own = gaps[(gaps["suite"] == suite) & (gaps["kind"] == kind)].drop_duplicates("model_id").set_index("model_id")
    rows = []
    for i, path in enumerate(paths, 1):
        label = f"chain {i}: {data.names.get(path[0], path[0][:12])} ... ({len(path) - 1} steps)"
        for step, m in enumerate(path):
            if m in own.index:
                g = own.loc[m]
                rows.append({"chain": label, "step": step, "model": data.names.get(m, m[:12]), "model_id": m,
                             "public": float(g["public"]), "twin": float(g["twin_value"]), "gap": float(g["gap"]),
                             "paired": bool(g["paired"]), "in_sample": data.in_sample(m, suite)})
    return pd.DataFrame(rows, columns=["chain", "step", "model", "model_id", "public", "twin", "gap", "paired",
                                       "in_sample"])


def _ramp(x: float) -> str:
    return RAMP[min(len(RAMP) - 1, max(0, int(x * len(RAMP))))]


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def dot_graph(data: Data, nodes: list[str], focus: str, values: dict[str, float] | None,
              severity: dict[str, str], suite: str | None, split: str | None = None, percent: bool = True) -> str:
    """The ancestry of `focus` (the given nodes) as DOT; fill by score (values: proportions written in %, else as
    they are, a judge's rating) or by worst flag (severity); a double outline on the models in-sample on
    suite:split (None: the suite's default split)."""
    keep = set(nodes)
    shown = [v for n, v in (values or {}).items() if n in keep]
    lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
    lines = ["digraph lineage {", "rankdir=TB;", 'node [shape=box, style="rounded,filled", fontname="Helvetica", '
             'fontsize=10];', 'edge [fontsize=8, color="#777777"];']
    for i, n in enumerate(nodes):
        label = data.names.get(n, n[:12])
        if values is not None:
            v = values.get(n)
            fill = _ramp((v - lo) / (hi - lo) if v is not None and hi > lo else 0.5) if v is not None else "#eeeeee"
            label += ("\\n-" if v is None else f"\\n{100 * v:.1f}" if percent else f"\\n{v:.2f}")
            font = "white" if v is not None and hi > lo and (v - lo) / (hi - lo) > 0.6 else "black"
        else:
            sev = severity.get(n)
            fill, font = SEVERITY_COLOURS.get(sev, SEVERITY_COLOURS[None]), "black"
            label += f"\\n{sev} flag" if sev else ""
        extra = ", penwidth=3" if n == focus else ""
        if suite and data.in_sample(n, suite, split):
            extra += ", peripheries=2"
        lines.append(f'n{i} [label={_quote(label)}, fillcolor="{fill}", fontcolor="{font}"{extra}];')
    index = {n: i for i, n in enumerate(nodes)}
    for n in nodes:
        for p in data.graph.parents.get(n, ()):
            if p in index:
                w = data.graph.weights.get((n, p))
                lab = f' [label="{w:.2f}"]' if isinstance(w, float) else ""
                lines.append(f"n{index[p]} -> n{index[n]}{lab};")
    lines.append("}")
    return "\n".join(lines)
