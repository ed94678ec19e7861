"""The dynamics model of every epoch, kept for fits that train the very same one.

A BMIL fit trains its backwards model first in each epoch, from a generator of (seed, rank, epoch)
and the demos alone: the policy, the traces and every setting a tune searches come after it. So
the trials of one seed train the same sequence of models, bit for bit, and a fit that finds an
epoch's model here loads it (with its optimizer and the generator where training left it) instead
of training it. The key holds everything the sequence depends on; an entry that cannot be read is
trained again and rewritten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from bmil.files import atomic_path
from bmil.numerics import record


def model_key(method) -> str:
    """What a BMIL fit's model sequence depends on: the demos and the train/held-out split, the
    model's first weights and settings, the seed and rank, and the numerics."""
    digest = hashlib.sha256()
    for name in ("obs", "action", "next_obs"):
        digest.update(method.transitions[name].detach().cpu().numpy().tobytes())
    digest.update(method.train_idx.numpy().tobytes())
    for name, tensor in sorted(method.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    digest.update(json.dumps({"model": asdict(method.model_cfg), "source": method.trace_cfg.source, "seed": method.seed,
                              "rank": method.global_rank, "world": method.trainer.world_size, "numerics": record()},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


class ModelCache:
    """``folder/<key>/epoch_<k>.pt``: the model, its optimizer, the epoch's generator and what
    training reported, after epoch ``k``."""

    def __init__(self, folder: str | Path, key: str):
        self.folder = Path(folder) / key

    def load(self, epoch: int) -> Optional[dict]:
        path = self._path(epoch)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # cut short or damaged: train the epoch again (and rewrite it)
            return None

    def save(self, epoch: int, entry: dict) -> None:
        with atomic_path(self._path(epoch)) as tmp:
            torch.save(entry, tmp)

    def _path(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:05d}.pt"
