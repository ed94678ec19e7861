"""The policy: 3x256 ReLU MLP with a tanh-bounded action (deterministic + MSE, or Gaussian + NLL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bmil.models.mlp import mlp


class Policy(nn.Module):
    """pi(a | s). Deterministic by default: tanh(MLP(s)) trained with MSE (the original code).

    With ``gaussian=True`` a state-dependent log-std head is added and the loss is the Gaussian NLL
    of the demonstrated action around the tanh mean (the paper's max-likelihood form); acting uses
    the mean either way. Calling the module maps observations (B, obs_dim) to actions (B, act_dim),
    so it is directly a batch policy for ``bmil.evaluation``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256, 256),
                 gaussian: bool = False):
        super().__init__()
        self.gaussian = gaussian
        self.body = mlp(obs_dim, hidden[-1], hidden[:-1], final_activation=True)
        self.mean_head = nn.Linear(hidden[-1], act_dim)
        self.log_std_head = nn.Linear(hidden[-1], act_dim) if gaussian else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean_head(self.body(obs)))

    def loss(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        h = self.body(obs)
        mean = torch.tanh(self.mean_head(h))
        if not self.gaussian:
            return F.mse_loss(mean, action)
        log_std = self.log_std_head(h).clamp(-5.0, 2.0)
        return (0.5 * ((action - mean) / log_std.exp()).pow(2) + log_std).mean()
