"""Exact coverage, width and agreement with McNemar's exact test of three 95% intervals of a difference of paired
0/1 scores: the t interval of the paired differences, Newcombe's hybrid score interval (1998, method 10) and
Tango's score interval (harness.stats.tango_interval, what paired_compare uses).

    python benchmarks/bench_paired_interval.py

Every outcome of n pairs (n = 5, 10, 20, 50: both right, a alone right, b alone right, both wrong) weighted by its
multinomial probability, on a grid of P(a alone right), P(b alone right) in 0-40% (sum <= 80%) and three shares of
the concordant pairs right for both. Figures: docs/check.md (the paragraph on the interval). Newcombe's interval
and the t interval are written here, for this comparison only.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import binom, multinomial, norm
from scipy.stats import t as student_t

from harness.stats import tango_interval

Z = float(norm.ppf(0.975))
DISCORDANT = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4]
RIGHT_SHARE = [0.1, 0.5, 0.9]


def wilson(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, d = x / n, 1 + Z * Z / n
    centre, half = (p + Z * Z / (2 * n)) / d, Z * np.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / d
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def newcombe(e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Method 10 for p1 - p2, p1 = (e + f) / n, p2 = (e + g) / n, phi with Newcombe's correction."""
    n = e + f + g + h
    p1, p2 = (e + f) / n, (e + g) / n
    (l1, u1), (l2, u2) = wilson(e + f, n), wilson(e + g, n)
    num = e * h - f * g
    num = np.where(num > 0, np.maximum(num - n / 2, 0), num)
    den = np.sqrt((e + f) * (g + h) * (e + g) * (f + h))
    phi = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    down = np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
    up = np.sqrt(np.maximum((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0))
    return np.maximum(p1 - p2 - down, -1), np.minimum(p1 - p2 + up, 1)


def t_interval(f: np.ndarray, g: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    m = (f - g) / n
    half = student_t.ppf(0.975, n - 1) * np.sqrt(np.maximum((f + g - n * m * m) / (n - 1), 0) / n)
    return m - half, m + half  # no discordant pair: [0, 0]


# Newcombe (1998), Table III, method 10: (e, f, g, h) -> the published 95% limits of p1 - p2
TABLE_III = [((36, 12, 2, 0), (0.0569, 0.3404)), ((20, 12, 2, 16), (0.0562, 0.3292)),
             ((36, 14, 0, 0), (0.1528, 0.4167)),
             ((2, 97, 1, 0), (0.8721, 0.9854)), ((0, 29, 1, 0), (0.6666, 0.9882)), ((0, 30, 0, 0), (0.8395, 1.0)),
             ((54, 0, 0, 0), (-0.0664, 0.0664))]


def check_newcombe() -> None:
    for cells, want in TABLE_III:
        lo, hi = newcombe(*(np.array([float(c)]) for c in cells))
        assert (round(float(lo[0]), 4), round(float(hi[0]), 4)) == want, (cells, lo, hi, want)


def grid() -> list[tuple[float, float, float, float]]:
    cells = []
    for pf, pg in itertools.product(DISCORDANT, DISCORDANT):
        if 0 < pf + pg <= 0.8:
            cells += [(s * (1 - pf - pg), pf, pg, (1 - s) * (1 - pf - pg)) for s in RIGHT_SHARE]
    return cells


def report(n: int) -> None:
    tables = np.array([(e, f, g, n - e - f - g) for e in range(n + 1) for f in range(n + 1 - e)
                       for g in range(n + 1 - e - f)], dtype=float)
    e, f, g, h = tables.T  # f: b alone right, g: a alone right; the difference is p_b - p_a
    tango = np.array([tango_interval(int(gi), int(fi), n) for fi, gi in zip(f, g, strict=True)]).T
    intervals = {"t": t_interval(f, g, n), "newcombe": newcombe(e, f, g, h), "tango": (tango[0], tango[1])}
    m = f + g
    mcnemar = np.where(m == 0, 1.0, np.minimum(1.0, 2 * binom.cdf(np.minimum(f, g), m, 0.5))) < 0.05
    cells = grid()
    weights = [multinomial.pmf(tables.astype(int), n, c) for c in cells]
    for name, (lo, hi) in intervals.items():
        truth = [c[1] - c[2] for c in cells]
        covers = [(lo <= d + 1e-12) & (d - 1e-12 <= hi) for d in truth]
        cov = np.array([np.sum(w * c) for w, c in zip(weights, covers, strict=True)])
        width = np.array([np.sum(w * (hi - lo)) for w in weights])
        differ = np.array([np.sum(w * (((lo > 0) | (hi < 0)) != mcnemar)) for w in weights])
        print(f"n={n:3d} {name:9s} coverage min {cov.min():.3f} mean {cov.mean():.3f}"
              f" below 93% {np.mean(cov < 0.93):.2f} | mean width {width.mean():.3f}"
              f" | P(excludes 0 != exact McNemar) mean {differ.mean():.3f} max {differ.max():.3f}")


if __name__ == "__main__":
    check_newcombe()
    for size in (5, 10, 20, 50):
        report(size)
