"""Evaluation across DDP ranks: each rank runs its share of the start list, outcomes are gathered.

Kept apart from ``bmil.evaluation``, which knows nothing about Lightning.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch

from bmil.evaluation import EvalResult, Evaluator


def make_evaluator(trainer, env: str, workers: int | None = None) -> Evaluator:
    """An evaluator whose worker processes share this machine's cores among the local ranks
    (``BMIL_EVAL_WORKERS`` overrides the default, e.g. 0 when ``bmil reproduce`` runs several
    fits side by side)."""
    if workers is None and os.environ.get("BMIL_EVAL_WORKERS"):
        workers = int(os.environ["BMIL_EVAL_WORKERS"])
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // max(1, trainer.num_devices))
        workers = 0 if workers == 1 else workers  # a single worker: run in-process
    return Evaluator(env, workers)


def evaluate_sharded(trainer, evaluator: Evaluator, policy: torch.nn.Module, starts: np.ndarray,
                     seed: int, success: str) -> EvalResult:
    """Every rank evaluates a contiguous share of ``starts`` with a CPU copy of ``policy``; all
    ranks return the full, gathered per-start result (exactly one episode per start)."""
    policy = copy.deepcopy(policy).cpu().eval()
    world, rank = trainer.world_size, trainer.global_rank
    bounds = np.linspace(0, len(starts), world + 1).astype(int)
    mine = evaluator.evaluate(policy, starts[bounds[rank] : bounds[rank + 1]], seed, success)
    outcome, steps = mine.success, mine.steps
    if world > 1:  # gather every rank's outcomes, padded to the longest share
        sizes = np.diff(bounds)
        local = torch.full((2, int(sizes.max())), -1, dtype=torch.int64)
        local[0, : len(outcome)] = torch.as_tensor(outcome, dtype=torch.int64)
        local[1, : len(steps)] = torch.as_tensor(steps)
        gathered = trainer.strategy.all_gather(local).cpu()
        outcome = torch.cat([g[0, :n] for g, n in zip(gathered, sizes)]).numpy().astype(bool)
        steps = torch.cat([g[1, :n] for g, n in zip(gathered, sizes)]).numpy()
    return EvalResult.of(evaluator.domain, starts, outcome, steps, success)
