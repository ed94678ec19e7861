"""NoiseBC: behaviour cloning on demo states perturbed by Gaussian noise, labelled with the demo's
action (the cheap baseline of CCIL's paper; ../shared/reference/competing-methods.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bmil.errors import require
from bmil.methods.base import ImitationMethod, as_settings
from bmil.methods.registry import register
from bmil.tuning.space import Param, Task


@dataclass
class NoiseSettings:
    """State noise of NoiseBC.

    Args:
        scale: Standard deviation of the noise on each observation dimension, in units of that
            dimension's standard deviation over the demos (a dimension constant in the demos gets
            none).
        clean_fraction: Share of each policy batch left clean: the demo rows are kept beside their
            noisy copies.
    """

    scale: float = 0.1
    clean_fraction: float = 0.5

    def __post_init__(self):
        require(0 <= self.scale < float("inf"), "model.noise.scale", self.scale, "0 or more")
        require(0 <= self.clean_fraction <= 1, "model.noise.clean_fraction", self.clean_fraction, "in [0, 1]")


@register("noise_bc", config="noise_bc.yaml", tunable=True)
class NoiseBC(ImitationMethod):
    """BC's policy, demos and policy steps; each policy batch's rows are, with probability
    1 - clean_fraction, the demo state plus N(0, (scale * demo std)^2) per dimension."""

    def __init__(self, noise: NoiseSettings = NoiseSettings(), **kwargs):
        """
        Args:
            noise: The state noise.
            **kwargs: What every method takes (``ImitationMethod``: env, demos, policy, seed, evaluation).
        """
        super().__init__(**kwargs)
        self.noise_cfg = as_settings(NoiseSettings, noise)

    @classmethod
    def search_space(cls, task: Task) -> list[Param]:
        """The noise scale (in demo standard deviations; the baselines' search chose 0.3-1.0) and the
        clean share of each batch, with the policy's learning rate and epochs."""
        return [Param("model.noise.scale", 0.01, 2.0, log=True), Param("model.noise.clean_fraction", 0.0, 0.9),
                *super().search_space(task)]

    def setup_method(self) -> None:
        self.obs_std = self.transitions["obs"].std(0)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.obs_std = self.obs_std.to(self.device)

    def policy_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        obs, action = self.demo_batch(self.policy_cfg.batch_size)
        return self.perturb(obs), action

    def perturb(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs`` with the noise on the rows drawn to be noisy (this epoch's generator)."""
        cfg = self.noise_cfg
        noisy = torch.rand(len(obs), generator=self._rng) >= cfg.clean_fraction
        noise = torch.randn(obs.shape, generator=self._rng) * noisy[:, None]
        return obs + cfg.scale * self.obs_std * noise.to(obs.device, obs.dtype)
