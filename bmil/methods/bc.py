"""Behaviour cloning: M policy steps per epoch on B demo rows (BMIL with p_d = 1)."""

from __future__ import annotations

from bmil.methods.base import ImitationMethod
from bmil.methods.registry import register


@register("bc", config="bc.yaml", tunable=True)
class BC(ImitationMethod):
    """Behaviour cloning: the policy, demos and policy steps of BMIL, without a model or traces
    (the base's epoch, with no phase of its own)."""
