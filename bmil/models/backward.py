"""The backwards model B(a_t, s_t | s_{t+1}) = B_A(a_t | s_{t+1}) * B_S(s_t - s_{t+1} | s_{t+1}, a_t)."""

from __future__ import annotations

import torch
from torch import nn

from bmil.models.mlp import GaussianMLP


class BackwardsModel(nn.Module):
    """Two conditional diagonal Gaussians trained jointly by the NLL of Eqn. 1.

    ``action_net`` (B_A) predicts the action that led into a state; ``state_net`` (B_S) predicts the
    previous state as a difference from the next one (``obs_delta`` in the original code).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 4):
        super().__init__()
        self.action_net = GaussianMLP(obs_dim, act_dim, hidden, layers)
        self.state_net = GaussianMLP(obs_dim + act_dim, obs_dim, hidden, layers)

    def fit_normalization(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> None:
        # Actions stay in their [-1, 1] units: SC(c)'s coefficients (docs/original-code.md) are
        # calibrated on raw action log-variances.
        self.action_net.x_norm.fit(next_obs)
        self.state_net.x_norm.fit(torch.cat([next_obs, action], -1))
        self.state_net.y_norm.fit(obs - next_obs)

    def loss(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """-log B_A(a | s') - log B_S(s - s' | s', a), plus the log-variance bound penalty."""
        return (
            self.action_net.nll(next_obs, action)
            + self.state_net.nll(torch.cat([next_obs, action], -1), obs - next_obs)
            + self.action_net.bound_penalty()
            + self.state_net.bound_penalty()
        )

    def action_distribution(self, next_obs: torch.Tensor, variance_as_std: bool = False):
        """Mean, std and log-variance of B_A(a | s') (actions in their own units)."""
        return self.action_net.mean_std(next_obs, variance_as_std)

    def sample_previous(self, next_obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator,
                        variance_as_std: bool = False) -> torch.Tensor:
        """Draw s ~ B_S(s | s', a)."""
        return next_obs + self.state_net.sample(torch.cat([next_obs, action], -1), generator, variance_as_std)
