"""The pages' charts as Vega-Lite specs (plain dicts for st.vega_lite_chart), written as Altair would write them.

Altair built the same specs through its channel classes and schema checks: 0.05-0.08 s per chart and render at
10,000 models (two charts on the Methods page), which a dict does not cost. `field("score:Q", title="score")` is
Altair's shorthand: a field name, then N, O, Q or T for its type.

    st.vega_lite_chart(frame, charts.lines("generation:O", "score:Q", "series:N"), width="stretch")
"""

from __future__ import annotations

from typing import Any

TYPES = {"N": "nominal", "O": "ordinal", "Q": "quantitative", "T": "temporal"}
Spec = dict[str, Any]


def field(shorthand: str, **props: Any) -> dict[str, Any]:
    """'name:Q' -> {'field': 'name', 'type': 'quantitative', **props}."""
    name, _, kind = shorthand.rpartition(":")
    return {"field": name, "type": TYPES[kind], **props}


def tooltips(*items: str | dict[str, Any]) -> list[dict[str, Any]]:
    """Tooltip fields, values shown as they are: a bare name is nominal, 'name:Q' quantitative; a dict (field(...,
    format=".1f")) is used as it is."""
    return [item if isinstance(item, dict) else field(item if ":" in item else f"{item}:N") for item in items]


def unzeroed(shorthand: str, **props: Any) -> dict[str, Any]:
    """A quantitative axis that starts near the data, not at zero."""
    return field(shorthand, scale={"zero": False}, **props)


def lines(x: str | dict, y: str | dict, color: str | dict, tooltip: list[dict[str, Any]] | None = None,
          **encoding: Any) -> Spec:
    """Lines with points: y (not from zero, from a shorthand) against x, one line per color; a channel given as a
    dict (field(...) with a title) is used as it is."""
    enc = {"x": _channel(x), "y": unzeroed(y) if isinstance(y, str) else y, "color": _channel(color), **encoding}
    if tooltip is not None:
        enc["tooltip"] = tooltip
    return {"mark": {"type": "line", "point": True}, "encoding": enc}


def _channel(c: str | dict) -> dict[str, Any]:
    return field(c) if isinstance(c, str) else c


def bars_with_interval(y: str, x: str, x_title: str, low: str = "lo:Q", high: str = "hi:Q") -> Spec:
    """One horizontal bar per y value with its interval as a black rule."""
    return {"encoding": {"y": field(y, title=None)}, "layer": [
        {"mark": {"type": "bar"}, "encoding": {"x": field(x, title=x_title)}},
        {"mark": {"type": "rule", "color": "black"},
         "encoding": {"x": field(low), "x2": {"field": high.rpartition(":")[0]}}},
    ]}
