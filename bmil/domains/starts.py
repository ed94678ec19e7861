"""Proof that robustness starts are unseen: the first observations of a sample of them against those
of the training (demonstration) start. Robustness measured from starts that are the training start
(an env whose ``reset`` ignores its options, a perturbation that moves nothing) reads as a perfect
score, so every fit checks the start lists it will evaluate on before it trains, and every
robustness evaluation checks its own.

Robustness starts are unseen when, in some observation dimension, a good share of them lie outside
the range the training start's own reset noise spans, and when they spread wider than that noise in
some dimension: not one start repeated. A list too short to tell is judged by a larger sample of
the same distribution instead.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from bmil.errors import BMILError

SAMPLE = 64  # starts reset to sample a distribution: 0.1-0.3 s on the built-in domains
SHORTEST = 16  # a shorter list of starts says too little on its own
OUTSIDE = 0.25  # the share of starts outside the training range that makes them unseen (same law: ~3%)
SPREAD = 1.5  # how much wider than the training start's noise robustness starts must spread


def reset_first_observations(domain, rows: np.ndarray) -> np.ndarray:
    """The first observation of every start row, each reset in a fresh environment of ``domain``."""
    env = domain.make_env()
    try:
        return np.stack([np.asarray(env.reset(seed=i, options={"start": row})[0], dtype=np.float64).ravel()
                         for i, row in enumerate(rows)])
    finally:
        env.close()


def not_unseen(training: np.ndarray, starts: np.ndarray) -> Optional[str]:
    """Why the first observations ``starts`` are not unseen against ``training`` (None: they are, or
    there are fewer than ``SHORTEST`` of them to tell)."""
    if len(starts) < SHORTEST:
        return None
    tol = 1e-6 * (1.0 + np.maximum(np.abs(training).max(0), np.abs(starts).max(0)))  # float32's rounding
    low, high = training.min(0) - tol, training.max(0) + tol
    outside = ((starts < low) | (starts > high)).mean(0)
    if outside.max() < OUTSIDE:
        return (f"none of the {len(starts)} starts differs from the training start beyond its own reset noise "
                f"(in every observation dimension at most {100 * outside.max():.0f}% of them lie outside the "
                "training starts' range)")
    if not (starts.std(0) > SPREAD * training.std(0) + tol).any():
        return (f"the {len(starts)} starts spread no wider than {SPREAD}x the training start's own reset noise in "
                "any observation dimension: one start, repeated with that noise")
    return None


def refuse_or_warn(problem: str, refuse: bool) -> None:
    """The problem as an error, or as a warning (and the work goes on)."""
    if not refuse:
        warnings.warn(problem, stacklevel=3)
    else:
        raise BMILError(problem)
