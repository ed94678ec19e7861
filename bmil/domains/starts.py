"""Proof that robustness starts are unseen: the first observations of a sample of them against those
of the training (demonstration) start. Robustness measured from starts that are the training start
(an env whose ``reset`` ignores its options, a perturbation that moves nothing) reads as a perfect
score, so every fit and every robustness evaluation checks its starts first.

Robustness starts are unseen when, in some observation dimension, a good share of them lie outside
the range the training start's own reset noise spans, and (given enough of them to tell) when they
spread more than that noise in some dimension: not one start repeated with reset noise.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from bmil.errors import BMILError

SAMPLE = 64  # starts reset to sample a distribution: 0.1-0.3 s on the built-in domains
OUTSIDE = 0.25  # the share of starts outside the training range that makes them unseen (same law: ~3%)
SPREAD = 1.5  # how much more than the training start's noise robustness starts must spread
SPREAD_FROM = 8  # starts needed to judge their spread


def first_observations(domain, rows: np.ndarray) -> np.ndarray:
    """The first observation of every start row, each reset in a fresh environment of ``domain``."""
    env = domain.make_env()
    try:
        return np.stack([np.asarray(env.reset(seed=i, options={"start": row})[0], dtype=np.float64).ravel()
                         for i, row in enumerate(rows)])
    finally:
        env.close()


def not_unseen(training: np.ndarray, starts: np.ndarray) -> Optional[str]:
    """Why the first observations ``starts`` are not unseen against ``training`` (None: they are)."""
    if len(starts) < 2:
        return None
    tol = 1e-9 * (1.0 + np.maximum(np.abs(training).max(0), np.abs(starts).max(0)))
    low, high = training.min(0) - tol, training.max(0) + tol
    outside = ((starts < low) | (starts > high)).mean(0)
    if outside.max() < OUTSIDE:
        return (f"none of the {len(starts)} starts differs from the training start beyond its own reset noise "
                f"(in every observation dimension at most {100 * outside.max():.0f}% of them lie outside the "
                "training starts' range)")
    if len(starts) >= SPREAD_FROM and not (starts.std(0) > SPREAD * training.std(0) + tol).any():
        return (f"the {len(starts)} starts do not differ from each other beyond the training start's own reset "
                "noise (one start, repeated)")
    return None


def refuse_or_warn(problem: str, mode: str) -> None:
    """``mode`` "refuse": the problem is an error; "warn": a warning, and the work goes on."""
    if mode == "warn":
        warnings.warn(problem, stacklevel=3)
    else:
        raise BMILError(problem)
