"""Building blocks: plain MLPs, a standardiser, and a conditional diagonal Gaussian MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], final_activation: bool = False) -> nn.Sequential:
    """Linear+ReLU for each hidden width, then Linear(out_dim) (+ReLU if ``final_activation``)."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    if final_activation:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Standardizer(nn.Module):
    """(x - mean) / std with statistics fixed from data; saved with the model as buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> Standardizer:
        self.mean.copy_(x.mean(0))
        # Constant dimensions (e.g. a never-moving object's rotation) keep unit scale.
        std = x.std(0)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


class GaussianMLP(nn.Module):
    """p(y | x) = N(mu(x), exp(logvar(x))) per dimension, with a learnable soft-bounded logvar.

    Trunk: 3 Linear+ReLU layers and a 4th linear layer (the original's "4-layer 256 MLP"), then a
    mean head and a log-variance head. The log-variance is kept in [min_logvar, max_logvar] with
    softplus (PETS/MBPO): lv = max - softplus(max - raw); lv = min + softplus(lv - min). The
    original code used ``min - softplus`` in the second step, which only bounds from above
    (docs/original-code.md); here both bounds hold. Inputs and outputs are standardised with
    statistics fitted on the demonstrations, so the network sees unit-scale data.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 4):
        super().__init__()
        self.trunk = mlp(in_dim, hidden, (hidden,) * (layers - 1))
        self.mean_head = nn.Linear(hidden, out_dim)
        self.logvar_head = nn.Linear(hidden, out_dim)
        self.max_logvar = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), -10.0))
        self.x_norm, self.y_norm = Standardizer(in_dim), Standardizer(out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance in *standardised* output units."""
        h = self.trunk(self.x_norm(x))
        raw = self.logvar_head(h)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return self.mean_head(h), logvar

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood (constants dropped), mean over batch and dims."""
        mu, logvar = self(x)
        z = self.y_norm(y)
        return 0.5 * ((mu - z).pow(2) * torch.exp(-logvar) + logvar).mean()

    def bound_penalty(self) -> torch.Tensor:
        """Keeps the learnable bounds tight (PETS): 0.01 * (sum max - sum min)."""
        return 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    def mean_std(self, x: torch.Tensor, variance_as_std: bool = False):
        """Mean, std (in data units) and log-variance (standardised units) of p(y | x).

        ``variance_as_std`` reproduces the original code's quirk of using exp(logvar) as the scale.
        """
        mu, logvar = self(x)
        std = torch.exp(logvar if variance_as_std else 0.5 * logvar) * self.y_norm.std
        return self.y_norm.inverse(mu), std, logvar

    def sample(self, x: torch.Tensor, generator: torch.Generator, variance_as_std: bool = False) -> torch.Tensor:
        """One draw y ~ p(y | x) in data units (noise from ``generator``, on the CPU)."""
        mean, std, _ = self.mean_std(x, variance_as_std)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + std * noise
