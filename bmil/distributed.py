"""Evaluation under DDP: how a rank shares the machine's cores and gathers its peers' outcomes.

Kept apart from ``bmil.evaluation``, which knows nothing about Lightning.
"""

from __future__ import annotations

import numpy as np
import torch

from bmil.evaluation.evaluator import Shard
from bmil.system import usable_cores


def default_workers(trainer) -> int:
    """Evaluation worker processes per rank: the usable cores shared by the local ranks (0, i.e.
    in-process, when that leaves one core per rank)."""
    workers = max(1, usable_cores() // max(1, trainer.num_devices))
    return 0 if workers == 1 else workers


def rank_shard(trainer) -> Shard:
    """This rank's share of an evaluation; outcomes are gathered over ``trainer.strategy``."""

    def gather(outcome: np.ndarray, steps: np.ndarray, sizes: np.ndarray):
        local = torch.full((2, int(sizes.max())), -1, dtype=torch.int64)  # padded to the longest share
        local[0, : len(outcome)] = torch.as_tensor(outcome, dtype=torch.int64)
        local[1, : len(steps)] = torch.as_tensor(steps)
        gathered = trainer.strategy.all_gather(local).cpu()
        outcome = torch.cat([g[0, :n] for g, n in zip(gathered, sizes)]).numpy().astype(bool)
        steps = torch.cat([g[1, :n] for g, n in zip(gathered, sizes)]).numpy()
        return outcome, steps

    return Shard(trainer.global_rank, trainer.world_size, gather)
