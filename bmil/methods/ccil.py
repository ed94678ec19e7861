"""CCIL (Ke et al., ICLR 2024): corrective labels from a smooth forward model, then BC on demos and
labels (../shared/reference/competing-methods.md; how bmil's version differs: docs/training.md).

Before the first policy step, a forward model f(s, a) = s' - s is fitted to the demos with a local
Lipschitz penalty (CCIL's sampled "soft" constraint, in the model's standardised input and output
units); then each demo transition (s, a, s') whose one-step prediction the model fits gives labels:
- BackTrack: the state s~ with s~ + f(s~, a) = s, found by the fixed-point iteration
  s~ <- s - f(s~, a); the pair (s~, a) leads back onto the demonstration;
- noisy actions: a~ = clip(a + N(0, delta^2)), s~ with s~ + f(s~, a~) = s' (the same solve);
each kept when the solve converged and s~ lies near the demo state s. Distances and tolerances are
in units of the demos' mean step length |s' - s|. The policy then trains as BC on batches of which
``demo_ratio`` are demo rows and the rest labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bmil.errors import require
from bmil.methods.base import ImitationMethod, as_settings
from bmil.methods.registry import register
from bmil.tuning.space import Param, Task
from bmil.models.vins import DynamicsModel


@dataclass
class CCILSettings:
    """Hyper-parameters of CCIL.

    Args:
        model_steps: Forward-model minibatch steps, all before the first policy step.
        model_batch_size: Its minibatch.
        model_lr: Its Adam learning rate.
        lipschitz: The local Lipschitz bound of the standardised model.
        lipschitz_weight: Weight of the penalty relu(|g(z + e) - g(z)| - lipschitz |e|).
        lipschitz_eps: Standard deviation of the sampled input perturbation e (standardised units).
        iterations: Fixed-point iterations of the label solve.
        tolerance: A label is kept when its solve's residual is at most this (in mean steps).
        noisy_labels: Noisy-action labels tried per demo transition.
        action_noise: delta, the noisy actions' standard deviation.
        max_distance: A label is kept when s~ is at most this far from the demo state (mean steps).
        fit_tolerance: Transitions whose one-step prediction misses s' by more (mean steps) give
            no labels (the model does not fit there).
        demo_ratio: Share of each policy batch drawn from the demos; the rest are labels.
    """

    model_steps: int = 2000
    model_batch_size: int = 256
    model_lr: float = 1e-3
    lipschitz: float = 3.0
    lipschitz_weight: float = 1.0
    lipschitz_eps: float = 0.05
    iterations: int = 100
    tolerance: float = 0.2
    noisy_labels: int = 2
    action_noise: float = 0.1
    max_distance: float = 2.0
    fit_tolerance: float = 0.5
    demo_ratio: float = 0.5

    def __post_init__(self):
        for key in ("model_batch_size", "iterations"):
            require(getattr(self, key) >= 1, f"model.ccil.{key}", getattr(self, key), "at least 1")
        for key in ("model_steps", "noisy_labels"):
            require(getattr(self, key) >= 0, f"model.ccil.{key}", getattr(self, key), "0 or more")
        for key in ("model_lr", "lipschitz", "tolerance", "max_distance", "fit_tolerance"):
            require(0 < getattr(self, key) < float("inf"), f"model.ccil.{key}", getattr(self, key), "a positive number")
        for key in ("lipschitz_weight", "lipschitz_eps", "action_noise"):
            require(getattr(self, key) >= 0, f"model.ccil.{key}", getattr(self, key), "0 or more")
        require(0 <= self.demo_ratio <= 1, "model.ccil.demo_ratio", self.demo_ratio, "in [0, 1]")


def solve_predecessor(step, target: torch.Tensor, action: torch.Tensor, iterations: int):
    """s~ with s~ + step(s~, a) = target by the fixed-point iteration s~ <- target - step(s~, a),
    started at the target; returns (s~, |s~ + step(s~, a) - target|)."""
    s = target.clone()
    for _ in range(iterations):
        s = target - step(s, action)
    return s, (s + step(s, action) - target).norm(dim=-1)


@torch.no_grad()
def corrective_labels(step, obs, action, next_obs, cfg: CCILSettings, generator: torch.Generator):
    """CCIL's labels from demo transitions under the state-change model ``step(s, a)``:
    (label_obs, label_action, counts) with counts of the transitions the model fits and of the kept
    BackTrack and noisy-action labels."""
    unit = (next_obs - obs).norm(dim=-1).mean().clamp_min(1e-8)  # the demos' mean step length
    fits = (obs + step(obs, action) - next_obs).norm(dim=-1) <= cfg.fit_tolerance * unit

    def keep(s, residual, anchor, fitted):
        return fitted & (residual <= cfg.tolerance * unit) & ((s - anchor).norm(dim=-1) <= cfg.max_distance * unit)

    back, residual = solve_predecessor(step, obs, action, cfg.iterations)
    kept_back = keep(back, residual, obs, fits)
    k = cfg.noisy_labels
    noise = torch.randn((k * len(action), action.shape[1]), generator=generator).to(action)
    noisy_action = (action.repeat(k, 1) + cfg.action_noise * noise).clamp(-1, 1)
    noisy, residual = solve_predecessor(step, next_obs.repeat(k, 1), noisy_action, cfg.iterations)
    kept_noisy = keep(noisy, residual, obs.repeat(k, 1), fits.repeat(k))
    counts = {"fits": int(fits.sum()), "backtrack": int(kept_back.sum()), "noisy_action": int(kept_noisy.sum())}
    return (torch.cat([back[kept_back], noisy[kept_noisy]]),
            torch.cat([action[kept_back], noisy_action[kept_noisy]]), counts)


def lipschitz_penalty(net, z: torch.Tensor, bound: float, eps: float, generator: torch.Generator) -> torch.Tensor:
    """CCIL's sampled local Lipschitz penalty: mean relu(|net(z + e) - net(z)| - bound |e|)."""
    e = eps * torch.randn(z.shape, generator=generator).to(z)
    return F.relu((net(z + e) - net(z)).norm(dim=-1) - bound * e.norm(dim=-1)).mean()


@register("ccil", config="ccil.yaml", tunable=True)
class CCIL(ImitationMethod):
    """BC's policy and policy steps on demos plus CCIL's corrective labels."""

    def __init__(self, ccil: CCILSettings = CCILSettings(), **kwargs):
        """
        Args:
            ccil: CCIL's forward model, labels and batch mix.
            **kwargs: What every method takes (``ImitationMethod``: env, demos, policy, seed, evaluation).
        """
        super().__init__(**kwargs)
        self.ccil_cfg = as_settings(CCILSettings, ccil)
        self.dynamics = DynamicsModel(self.domain.obs_dim, self.domain.act_dim, hidden=256)
        self.labels: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def search_space(cls, task: Task) -> list[Param]:
        """The Lipschitz bound, how far a label may lie from its demo state, the labels' share of a
        batch and the noisy-action scale, with the policy's learning rate and epochs."""
        return [Param("model.ccil.lipschitz", 0.3, 10.0, log=True), Param("model.ccil.max_distance", 1.0, 10.0, log=True),
                Param("model.ccil.demo_ratio", 0.3, 0.9), Param("model.ccil.action_noise", 0.0, 0.1),
                *super().search_space(task)]

    def setup_method(self) -> None:
        self.dynamics.fit_normalization(*self.demo_rows_at(slice(None)))

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().make_optimizers(),
                "dynamics": torch.optim.Adam(self.dynamics.parameters(), lr=self.ccil_cfg.model_lr)}

    def before_policy(self) -> None:
        if self.current_epoch == 0:
            self.train_dynamics()
        if self.labels is None:  # also after a resume: the labels follow from the saved model
            self.make_labels()

    def train_dynamics(self) -> None:
        s, n = self.ccil_cfg, len(self.transitions["obs"])
        opt, total = self.optimizer("dynamics"), 0.0
        for _ in range(s.model_steps):
            idx = torch.randint(n, (s.model_batch_size,), generator=self._rng).to(self.device)
            obs, action, next_obs = self.demo_rows_at(idx)
            loss = self.dynamics.loss(obs, action, next_obs) + s.lipschitz_weight * lipschitz_penalty(
                self.dynamics.net, self.dynamics.inputs(obs, action), s.lipschitz, s.lipschitz_eps, self._rng)
            self.step(opt, loss)
            total += loss.item()
        if s.model_steps:
            self._metrics["train/dynamics_loss"] = total / s.model_steps

    def make_labels(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)  # the same labels after a resume
        label_obs, label_action, counts = corrective_labels(self.state_change, *self.demo_rows_at(slice(None)),
                                                            self.ccil_cfg, generator)
        self.labels = (label_obs, label_action)
        self._metrics.update({f"train/ccil_{key}": float(value) for key, value in counts.items()})

    def state_change(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The forward model's f(s, a) = s' - s."""
        return self.dynamics(obs, action) - obs

    def policy_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.policy_cfg.batch_size
        label_obs, label_action = self.labels
        n_labels = 0 if len(label_obs) == 0 else batch - int(self.ccil_cfg.demo_ratio * batch)
        obs, action = self.demo_batch(batch - n_labels)
        if n_labels == 0:
            return obs, action
        idx = torch.randint(len(label_obs), (n_labels,), generator=self._rng).to(label_obs.device)
        return torch.cat([obs, label_obs[idx]]), torch.cat([action, label_action[idx]])
