"""Intervals: Wilson's for one success rate, a stratified one for a mean over maze cells, and the
t-interval of a mean over seeds."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def stratified_interval(successes: np.ndarray, counts: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """95% interval for the unweighted mean of per-group success rates (the mazes' mean over cells).

    Each group's rate gets the Agresti-Coull adjustment (z^2/2 pseudo-successes and failures, so a
    group at 0% or 100% still carries variance); the mean's variance is the sum of the groups'
    variances over K^2, as for a stratified sample. Groups without episodes are left out.
    """
    successes, counts = np.asarray(successes, float), np.asarray(counts, float)
    keep = counts > 0
    if not keep.any():
        return 0.0, 1.0
    s, n = successes[keep], counts[keep]
    mean = float((s / n).mean())
    n_adj = n + z * z
    p_adj = (s + z * z / 2) / n_adj
    half = z * math.sqrt(float((p_adj * (1 - p_adj) / n_adj).sum())) / len(n)
    return max(0.0, mean - half), min(1.0, mean + half)


# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) over seeds; half-width NaN for one value."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    df = len(values) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df  # (within 0.002 of t for df > 30)
    return mean, t * float(values.std(ddof=1)) / math.sqrt(len(values))
