"""VINS (Luo et al. 2020) as the original code ran it (docs/original-code.md): a value function
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

from bmil.errors import require
from bmil.methods.base import ImitationMethod, as_settings
from bmil.methods.registry import register
from bmil.models.vins import DynamicsModel, ValueFunction, VINSAgent, VINSSelection


@dataclass
class VINSSettings:
    """Hyper-parameters of VINS (the original's, docs/original-code.md, with rewards derived from the demos).

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

    def __post_init__(self):
        require(0 < self.gamma <= 1, "model.vins.gamma", self.gamma, "in (0, 1]")
        require(0 < self.target_tau <= 1, "model.vins.target_tau", self.target_tau, "in (0, 1]")
        for key in ("value_steps", "model_steps"):
            require(getattr(self, key) >= 0, f"model.vins.{key}", getattr(self, key), "0 or more")
        for key in ("value_batch_size", "model_batch_size", "interpolations", "perturb_copies", "candidates"):
            require(getattr(self, key) >= 1, f"model.vins.{key}", getattr(self, key), "at least 1")
        for key in ("value_lr", "model_lr"):
            require(0 < getattr(self, key) < float("inf"), f"model.vins.{key}", getattr(self, key), "a positive number")
        for key in ("perturb_scale", "ns_penalty", "action_noise"):
            require(getattr(self, key) >= 0, f"model.vins.{key}", getattr(self, key), "0 or more")


@register("vins", config="vins_{domain}.yaml")
class VINS(ImitationMethod):
    """A BC policy (demo rows only), a value function and a dynamics model trained beside it, and
    test-time selection of the best perturbed BC action (``agent``)."""

    def __init__(self, vins: VINSSettings = VINSSettings(), **kwargs):
        """
        Args:
            vins: VINS's value function, dynamics model and action selection.
            **kwargs: What every method takes (``ImitationMethod``: env, demos, policy (the BC
                prior and its training), seed, evaluation).
        """
        super().__init__(**kwargs)
        self.vins_cfg = as_settings(VINSSettings, vins)
        obs_dim, act_dim = self.domain.obs_dim, self.domain.act_dim
        dims = list(self.vins_cfg.perturb_dims)
        require(all(0 <= d < obs_dim for d in dims), "model.vins.perturb_dims", dims,
                f"observation dimensions of {self.domain.name}, 0 to {obs_dim - 1}")
        self.value = ValueFunction(obs_dim)
        self.value_target = ValueFunction(obs_dim).requires_grad_(False)
        self.dynamics = DynamicsModel(obs_dim, act_dim)

    def before_policy(self) -> None:
        self.train_value_and_dynamics()

    def train_value_and_dynamics(self) -> None:
        """VINS's value function (TD with interpolation and negative sampling, a soft-updated
        target) and its deterministic dynamics model, on uniformly sampled demo transitions."""
        s, n = self.vins_cfg, len(self.transitions["obs"])
        obs_std = self.value.norm.std
        opt_value, opt_dynamics = self.optimizer("value"), self.optimizer("dynamics")
        total_v = total_f = 0.0
        for _ in range(s.value_steps):
            idx = torch.randint(n, (s.value_batch_size,), generator=self._rng).to(self.device)
            obs, _, next_obs = self.demo_rows_at(idx)
            loss = value_loss(self.value, self.value_target, obs, next_obs, self.demo_done[idx], s, obs_std, self._rng)
            self.step(opt_value, loss)
            with torch.no_grad():
                for p, t in zip(self.value.parameters(), self.value_target.parameters()):
                    t.lerp_(p, s.target_tau)
            total_v += loss.item()
        for _ in range(s.model_steps):
            idx = torch.randint(n, (s.model_batch_size,), generator=self._rng).to(self.device)
            loss = self.dynamics.loss(*self.demo_rows_at(idx))
            opt_dynamics.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(opt_dynamics, gradient_clip_val=2.0, gradient_clip_algorithm="norm")
            opt_dynamics.step()
            total_f += loss.item()
        self.check_finite(torch.tensor(total_v), "VINS value-function", "vins.value_lr")
        self.check_finite(torch.tensor(total_f), "VINS dynamics-model", "vins.model_lr")
        self._metrics.update({"train/vins_value_loss": total_v / max(s.value_steps, 1),
                              "train/vins_dynamics_loss": total_f / max(s.model_steps, 1)})

    def agent(self) -> torch.nn.Module:
        return VINSAgent(self.acting_policy, self.dynamics, self.value, self.vins_cfg.candidates,
                         self.vins_cfg.action_noise)

    def export_module(self) -> torch.nn.Module:
        return VINSSelection(self.acting_policy, self.dynamics, self.value, self.vins_cfg.candidates,
                             self.vins_cfg.action_noise)

    def setup_method(self) -> None:
        self.demo_done = self.demo_data["done"]
        self.value.norm.fit(self.transitions["obs"])
        self.value_target.load_state_dict(self.value.state_dict())
        self.dynamics.fit_normalization(*self.demo_rows_at(slice(None)))

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.demo_done = self.demo_done.to(self.device)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        s = self.vins_cfg
        return {**super().make_optimizers(),
                "value": torch.optim.Adam(self.value.parameters(), lr=s.value_lr, fused=True),
                "dynamics": torch.optim.Adam(self.dynamics.parameters(), lr=s.model_lr, weight_decay=1e-5,
                                             fused=True)}


def derived_rewards(done: torch.Tensor) -> torch.Tensor:
    """Every demonstration ends at the goal: reward 1 on its last transition, 0 elsewhere."""
    return done.float()


def value_loss(value: ValueFunction, target: ValueFunction, obs, next_obs, done, settings: VINSSettings,
               obs_std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """TD regression on interpolated and negatively sampled states (docs/original-code.md).

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


