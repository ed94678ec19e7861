"""Behaviour cloning: M policy steps per epoch on B demo rows (BMIL with p_d = 1)."""

from __future__ import annotations

import torch

from bmil.methods.base import ImitationMethod


class BC(ImitationMethod):
    """Behaviour cloning: the policy, demos and policy steps of BMIL, without a model or traces."""

    def training_step(self, batch, batch_idx) -> torch.Tensor:
        self.start_epoch()
        return self.train_policy()
