"""Policy heads on one 3x256 ReLU MLP body with a tanh-bounded action. Calling a policy maps
observations (B, obs_dim) to actions (B, act_dim), so it is directly a batch policy for
``bmil.evaluation``; ``loss(obs, action)`` is what the methods minimise.

Add a head: subclass ``Policy`` (override ``loss``, and ``forward`` if acting changes) and add it
to ``POLICY_HEADS``; ``--model.policy.head <name>`` then selects it for every method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bmil.errors import BMILError
from bmil.models.mlp import mlp


class Policy(nn.Module):
    """Deterministic: tanh(MLP(s)) trained with MSE (the original code)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256, 256)):
        super().__init__()
        self.body = mlp(obs_dim, hidden[-1], hidden[:-1], final_activation=True)
        self.mean_head = nn.Linear(hidden[-1], act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean_head(self.body(obs)))

    def loss(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(obs), action)


class GaussianPolicy(Policy):
    """Adds a state-dependent log-std head; the loss is the Gaussian NLL of the demonstrated action
    around the tanh mean (the paper's maximum-likelihood form). Acting uses the mean."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256, 256)):
        super().__init__(obs_dim, act_dim, hidden)
        self.log_std_head = nn.Linear(hidden[-1], act_dim)

    def loss(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        h = self.body(obs)
        mean = torch.tanh(self.mean_head(h))
        log_std = self.log_std_head(h).clamp(-5.0, 2.0)
        return (0.5 * ((action - mean) / log_std.exp()).pow(2) + log_std).mean()


POLICY_HEADS: dict[str, type[Policy]] = {"deterministic": Policy, "gaussian": GaussianPolicy}


def make_policy(head: str, obs_dim: int, act_dim: int) -> Policy:
    if head not in POLICY_HEADS:
        raise BMILError(f"Unknown policy head '{head}'. Known heads: {', '.join(POLICY_HEADS)} "
                        "(bmil/models/policy.py).")
    return POLICY_HEADS[head](obs_dim, act_dim)
