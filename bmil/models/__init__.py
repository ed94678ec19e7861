"""Networks only: the policy heads, the backwards model, the forward model of the ablation and
VINS's value function and dynamics model."""

from bmil.models.backward import BackwardsModel
from bmil.models.forward import ForwardModel
from bmil.models.policy import POLICY_HEADS, Policy, make_policy

__all__ = ["POLICY_HEADS", "BackwardsModel", "ForwardModel", "Policy", "make_policy"]
