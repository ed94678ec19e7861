"""Checkpoints written atomically (a temporary file in the target folder, fsync, then rename) and
verified before use (``verify_checkpoint``).

Lightning's default writer stages through the system temp dir and *moves* the file, which is a
copy (not atomic) when that dir is on another filesystem; a run killed mid-write could then leave
a truncated ``last.ckpt``. Here the rename is always within one folder, so the previous checkpoint
stays intact until the new one is complete.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bmil.errors import BMILError
from bmil.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def verify_checkpoint(path) -> dict:
    """The checkpoint at ``path``, loaded without unpickling code (weights only), after checking
    every archive member's CRC and that every tensor is finite; one clear error otherwise."""
    path = Path(path)
    fix = "resume or evaluate another checkpoint (an earlier run folder's), or start the run afresh"
    if not path.is_file():
        raise BMILError(f"Checkpoint '{path}' not found; {fix}.")
    if not zipfile.is_zipfile(path):
        raise BMILError(f"'{path}' is not a checkpoint (not a PyTorch zip archive: truncated or another "
                        f"file); {fix}.")
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise BMILError(f"Checkpoint '{path}' is damaged (CRC mismatch in {damaged}); {fix}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for unreadable archives
        raise BMILError(f"Checkpoint '{path}' cannot be read ({type(e).__name__}: {e}); {fix}.") from None
    for key, tensor in _tensors(checkpoint.get("state_dict", {})):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BMILError(f"Checkpoint '{path}' holds non-finite values in {key}; {fix}.")
    return checkpoint


def _tensors(tree, prefix: str = ""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
