"""The vocabulary the overfitting signals share (docs/overfitting.md): severities, signals, thresholds, the Flag,
and the small statistics and formatting every signal uses.

    from harness.analysis.flags import THRESHOLDS, Flag, bh_reject, interval, severity
    Flag(model_id, model, "twin_gap", severity(excess, THRESHOLDS), suite, sentence, evidence)

Read by harness/analysis/overfit.py (signals 1, 2 and 4), divergence.py (signal 3) and verdicts.py (the twin-gap
tests); overfit re-exports SEVERITIES, SIGNALS, Thresholds, THRESHOLDS and Flag.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.stats import Z95  # the one 95% normal quantile: intervals here, in study tables and in harness.stats

SEVERITIES = ("info", "low", "medium", "high")
SIGNALS = ("exposure", "twin_gap", "lineage_divergence", "specialisation")


@dataclass(frozen=True)
class Thresholds:
    """Documented in docs/overfitting.md; scores are fractions (0.05 = 5 points)."""

    gap_min: float = 0.05        # excess twin gap (over reference models) before a twin_gap flag
    medium: float = 0.08         # excess (or loss) from which a flag is medium
    high: float = 0.15           # ... and high
    divergence_min: float = 0.05  # public gain minus twin gain along a chain
    min_depth: int = 2           # merges of merges: chains of at least this many merge steps
    gain_z: float = 1.96         # the gain on the optimised suite must be significant at this z
    loss_min: float = 0.03       # a loss elsewhere must be at least this large ...
    loss_z: float = 2.576        # ... and significant at this z (99%)
    spec_high: float = 0.10      # loss from which a specialisation flag is high
    spec_medium: float = 0.05
    fdr: float = 0.01            # Benjamini-Hochberg false discovery rate per signal
    min_reference: int = 5       # reference models needed to calibrate a twin (aligned twins need none)
    evolve_z: float = 2.576      # an evolve run's search gap must exceed generation 0's at this z


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Flag:
    model_id: str
    model: str
    signal: str        # exposure | twin_gap | lineage_divergence | specialisation
    severity: str      # info | low | medium | high
    suite: str
    explanation: str   # one sentence
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interval(value: float, se: float) -> list[float]:
    return [round(value - Z95 * se, 4), round(value + Z95 * se, 4)]


def severity(size: float, t: Thresholds) -> str:
    return "high" if size >= t.high else "medium" if size >= t.medium else "low"


def p_one_sided(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def bh_reject(pvalues: list[float], q: float) -> list[bool]:
    """Benjamini-Hochberg: which hypotheses to reject at false discovery rate q. An unknown p-value (NaN) counts as
    one more hypothesis, never rejected (sorted last: a NaN in the sort would leave the others out of order)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i] if pvalues[i] == pvalues[i] else math.inf)
    m, cut = len(pvalues), -1
    for rank, i in enumerate(order, 1):
        if pvalues[i] <= q * rank / m:
            cut = rank
    keep = set(order[:cut]) if cut > 0 else set()
    return [i in keep for i in range(len(pvalues))]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"
