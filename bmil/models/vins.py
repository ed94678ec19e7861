"""VINS (Luo et al. 2020) as the original code ran it (original-code-facts §5): a value function
learned from the demonstrations with negative sampling and state interpolation, a deterministic
forward dynamics model, a BC prior, and test-time selection of the best of k perturbed BC actions
by V(f(s, a)).

No rewards: every demonstration ends at the goal, so the reward is derived from the demos alone:
r = 1 on each demo's last transition, 0 elsewhere. V(s) then approximates gamma^(steps to the goal)
in [0, 1]. The original trained on environment rewards (Fetch -1 per step with gamma 1, mazes 1000 at
the goal with gamma 0.99); its negative-sampling penalties are rescaled to this [0, 1] value range
(see the configs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bmil.models.mlp import Standardizer, mlp


@dataclass
class VINSSettings:
    """Hyper-parameters of VINS (the original's, §11.2, with rewards derived from the demos).

    Args:
        gamma: Discount of the derived reward (mazes 0.99; Fetch 0.98, since with 0/1 rewards
            gamma 1 would give every demo state the same value).
        value_steps: Value-function minibatch steps per epoch (original: Fetch 1,000 passes, mazes
            8,000 passes over the demos, spread here over the epochs).
        value_batch_size: Value minibatch (Fetch 64, mazes 256).
        value_lr: Adam learning rate of V.
        target_tau: Soft update of the target value network after every step.
        interpolations: Interpolated states lambda*s + (1-lambda)*s' per minibatch.
        perturb_dims: Observation dimensions perturbed for negative sampling (mazes x, y: [0, 1];
            Push gripper [0, 1, 2]).
        perturb_scale: The perturbation is perturb_scale * N(0, 1) * (demo std of that dimension).
        perturb_copies: Perturbed copies of each state.
        ns_penalty: Value lost per unit RMS of the standard-normal perturbation (the original's
            ns_coef, rescaled to values in [0, 1]).
        model_steps: Dynamics-model minibatch steps per epoch (original: Fetch 500, mazes 1,500
            passes).
        model_batch_size: Dynamics minibatch (Fetch 128, mazes 256).
        model_lr: Adam learning rate of the dynamics model (weight decay 1e-5, grad-norm clip 2).
        candidates: k perturbed BC actions scored at every step.
        action_noise: alpha: candidates are clip(pi(s) + alpha * U(-1, 1)).
    """

    gamma: float = 0.99
    value_steps: int = 200
    value_batch_size: int = 256
    value_lr: float = 3e-4
    target_tau: float = 5e-4
    interpolations: int = 6
    perturb_dims: tuple[int, ...] = (0, 1)
    perturb_scale: float = 0.5
    perturb_copies: int = 2
    ns_penalty: float = 0.005
    model_steps: int = 40
    model_batch_size: int = 256
    model_lr: float = 3e-3
    candidates: int = 500
    action_noise: float = 0.05


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

    def _z(self, obs, action) -> torch.Tensor:
        return self.net(self.in_norm(torch.cat([obs, action], -1)).clamp(-5, 5))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.delta_norm.inverse(self._z(obs, action))

    def loss(self, obs, action, next_obs) -> torch.Tensor:
        target = self.delta_norm(next_obs - obs).clamp(-5, 5)
        return (self._z(obs, action).clamp(-5, 5) - target).pow(2).mean(-1).sqrt().mean()


def derived_rewards(done: torch.Tensor) -> torch.Tensor:
    """Every demonstration ends at the goal: reward 1 on its last transition, 0 elsewhere."""
    return done.float()


def value_loss(value: ValueFunction, target: ValueFunction, obs, next_obs, done, settings: VINSSettings,
               obs_std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """TD regression on interpolated and negatively sampled states (original-code-facts §5.2).

    Target at s: r + gamma (1 - done) V_old(s'); at s' itself: V_old(s'), or 1 at a demo's end (the
    goal). Interpolation: lambda*s + (1-lambda)*s' regresses to the same mix of the two targets.
    Negative sampling: s + scale * eps * std on the perturbed dims regresses to its target minus
    ns_penalty * RMS(eps), so states off the demonstrations look worse than those on them.
    """
    s = settings
    done = done.float()
    with torch.no_grad():
        v_next = torch.where(done > 0, torch.ones_like(done), target(next_obs))
        at_s = derived_rewards(done) + s.gamma * (1 - done) * v_next
    lam = torch.rand(s.interpolations, generator=generator).to(obs.device)
    mixed_obs = torch.cat([l * obs + (1 - l) * next_obs for l in lam])
    mixed_target = torch.cat([l * at_s + (1 - l) * v_next for l in lam])
    dims = list(s.perturb_dims)
    eps = torch.randn((s.perturb_copies, *obs.shape[:1], len(dims)), generator=generator).to(obs.device)
    perturbed = obs.repeat(s.perturb_copies, 1, 1)
    perturbed[..., dims] += s.perturb_scale * eps * obs_std[dims]
    penalty = s.ns_penalty * eps.pow(2).mean(-1).sqrt()
    neg_obs, neg_target = perturbed.flatten(0, 1), (at_s - penalty).flatten(0, 1)
    return F.mse_loss(value(torch.cat([mixed_obs, neg_obs])), torch.cat([mixed_target, neg_target]))


class VINSAgent(nn.Module):
    """Acts with the best of ``candidates`` perturbed BC actions by V(f(s, a)) (§5.5); the
    unperturbed BC action is not a candidate, as in the original. A batch policy for the evaluator:
    ``reset(num_envs, seed)`` seeds the candidate noise."""

    def __init__(self, policy: nn.Module, dynamics: DynamicsModel, value: ValueFunction,
                 candidates: int, action_noise: float):
        super().__init__()
        self.policy, self.dynamics, self.value = policy, dynamics, value
        self.candidates, self.action_noise = candidates, action_noise
        self.generator = torch.Generator().manual_seed(0)

    def reset(self, num_envs: int, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        n, k = len(obs), self.candidates
        prior = self.policy(obs)  # (n, act)
        noise = torch.rand((n, k, prior.shape[-1]), generator=self.generator).to(obs.device)
        actions = (prior[:, None] + self.action_noise * (2 * noise - 1)).clamp(-1.0, 1.0)
        states = obs[:, None].expand(n, k, obs.shape[-1])
        scores = self.value(self.dynamics(states.reshape(n * k, -1), actions.reshape(n * k, -1))).view(n, k)
        best = scores.argmax(1)
        return actions[torch.arange(n), best]
