"""Networks: the policy, the backwards model and the forward model of the ablation."""

from bmil.models.backward import BackwardsModel
from bmil.models.forward import ForwardModel
from bmil.models.policy import Policy

__all__ = ["BackwardsModel", "ForwardModel", "Policy"]
