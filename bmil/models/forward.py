"""The forward model of the paper's ablation (Table 2): p(s_{t+1} - s_t | s_t, a_t)."""

from __future__ import annotations

import torch
from torch import nn

from bmil.models.mlp import GaussianMLP


class ForwardModel(nn.Module):
    """One conditional Gaussian over the state change, as wide as needed to match the backwards
    model's parameter count (the paper keeps it "approximately constant"; the original did not)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 362, layers: int = 4):
        super().__init__()
        self.state_net = GaussianMLP(obs_dim + act_dim, obs_dim, hidden, layers)

    def fit_normalization(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> None:
        self.state_net.x_norm.fit(torch.cat([obs, action], -1))
        self.state_net.y_norm.fit(next_obs - obs)

    def loss(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return self.state_net.nll(torch.cat([obs, action], -1), next_obs - obs) + self.state_net.bound_penalty()

    def sample_next(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return obs + self.state_net.sample(torch.cat([obs, action], -1), generator)
