"""VINS's networks (Luo et al. 2020; trained by ``bmil.methods.VINS``): the value function, the
deterministic dynamics model, and the agent that acts with the best of k perturbed BC actions by
V(f(s, a))."""

from __future__ import annotations

import torch
from torch import nn

from bmil.models.mlp import Standardizer, mlp


class ValueFunction(nn.Module):
    """V(s): 2x256 MLP with LayerNorm before each ReLU, on standardised observations."""

    def __init__(self, obs_dim: int, hidden: int = 256):
        super().__init__()
        self.norm = Standardizer(obs_dim)
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(obs).clamp(-5, 5)).squeeze(-1)


class DynamicsModel(nn.Module):
    """f(s, a) = s + delta: a deterministic 2x500 MLP predicting the standardised delta, trained
    with the per-sample RMSE in standardised space (the original's loss)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 500):
        super().__init__()
        self.in_norm = Standardizer(obs_dim + act_dim)
        self.delta_norm = Standardizer(obs_dim)
        self.net = mlp(obs_dim + act_dim, obs_dim, (hidden, hidden))

    def fit_normalization(self, obs, action, next_obs) -> None:
        self.in_norm.fit(torch.cat([obs, action], -1))
        self.delta_norm.fit(next_obs - obs)

    def inputs(self, obs, action) -> torch.Tensor:
        """The network's input: (s, a) standardised and clipped to ±5."""
        return self.in_norm(torch.cat([obs, action], -1)).clamp(-5, 5)

    def _z(self, obs, action) -> torch.Tensor:
        return self.net(self.inputs(obs, action))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.delta_norm.inverse(self._z(obs, action))

    def loss(self, obs, action, next_obs) -> torch.Tensor:
        target = self.delta_norm(next_obs - obs).clamp(-5, 5)
        return (self._z(obs, action).clamp(-5, 5) - target).pow(2).mean(-1).sqrt().mean()


# Candidates are scored a few observations at a time: passes of ~1,000 rows keep the 500-wide
# hidden layers in cache, 1.4x faster than one pass over 16 x 500 rows, with bit-identical scores
# on one thread (benchmarks/vins_acting.py).
ROWS_PER_PASS = 1024


class VINSSelection(nn.Module):
    """Acts with the best of ``candidates`` perturbed BC actions by V(f(s, a)) (docs/original-code.md); the
    unperturbed BC action is not a candidate, as in the original. Its noise comes from torch's global
    generator (``torch.manual_seed``), so it scripts and saves as TorchScript (``bmil export``)."""

    stochastic = True

    def __init__(self, policy: nn.Module, dynamics: DynamicsModel, value: ValueFunction,
                 candidates: int, action_noise: float):
        super().__init__()
        self.policy, self.dynamics, self.value = policy, dynamics, value
        self.candidates, self.action_noise = candidates, action_noise
        self.obs_per_pass = max(1, ROWS_PER_PASS // candidates)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        prior = self.policy(obs)
        return self.select(obs, prior, torch.rand((obs.shape[0], self.candidates, prior.shape[-1])))

    def select(self, obs: torch.Tensor, prior: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The best candidate prior + action_noise * (2 noise - 1) (clamped) by V(f(s, a))."""
        actions = (prior[:, None] + self.action_noise * (2 * noise - 1)).clamp(-1.0, 1.0)
        scores = []
        for i in range(0, obs.shape[0], self.obs_per_pass):
            scores.append(self.score(obs[i:i + self.obs_per_pass], actions[i:i + self.obs_per_pass]))
        best = torch.cat(scores).argmax(1)
        return actions[torch.arange(obs.shape[0]), best]

    def score(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """V(f(s, a)) of each observation's candidates: (n, k) from obs (n, d) and actions (n, k, a)."""
        n, k = actions.shape[0], actions.shape[1]
        states = obs[:, None].expand(n, k, obs.shape[-1])
        return self.value(self.dynamics(states.reshape(n * k, -1), actions.reshape(n * k, -1))).view(n, k)


class VINSAgent(VINSSelection):
    """``VINSSelection`` as a batch policy for the evaluator: ``reset(num_envs, seed)`` seeds its own
    candidate noise (the same stream as ``torch.manual_seed(seed)`` gives the exported policy)."""

    def __init__(self, policy: nn.Module, dynamics: DynamicsModel, value: ValueFunction,
                 candidates: int, action_noise: float):
        super().__init__(policy, dynamics, value, candidates, action_noise)
        self.generator = torch.Generator().manual_seed(0)

    def reset(self, num_envs: int, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        prior = self.policy(obs)  # (n, act)
        noise = torch.rand((len(obs), self.candidates, prior.shape[-1]), generator=self.generator).to(obs.device)
        return self.select(obs, prior, noise)
