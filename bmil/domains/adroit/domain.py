"""Adroit Relocate (``relocate``): the paper's fixed ball and target, robustness from perturbed hand
poses (docs/domains.md#adroit-relocate)."""

from __future__ import annotations

from functools import partial

import numpy as np

from bmil.domains.adroit.env import ACT_DIM, HORIZON, NQ, NQ_HAND, OBS_DIM, RelocateTask
from bmil.domains.base import Domain

START_NOISE = 0.1  # U(±0.1) on joint positions (the paper's "qpos of the hand")


class RelocateDomain(Domain):
    """Start rows are the 36 joint offsets from the rest pose (see ``RelocateTask``). Training: the
    rest pose (deterministic, as the original); robustness: U(±0.1) on the 30 hand and arm joints,
    or with ``object_noise`` on the ball's 6 joints too (the original's code)."""

    obs_dim, act_dim, horizon, terminates_on_success = OBS_DIM, ACT_DIM, HORIZON, True
    family = "adroit"
    observation_layout = (("hand and arm joint angles (ARTx..THJ0)", NQ_HAND), ("palm - ball", 3),
                          ("palm - target", 3), ("ball - target", 3))
    render_camera = {"lookat": (0.0, -0.1, 0.15), "distance": 0.9, "azimuth": 90.0, "elevation": -30.0}

    def __init__(self, name: str, object_noise: bool = False):
        self.name, self.object_noise = name, object_noise
        self._model = None

    def make_env(self) -> RelocateTask:
        return RelocateTask()

    @property
    def model(self):
        """The hand's MuJoCo model (a built env's), for the expert and the figure's kinematics."""
        if self._model is None:
            self._model = RelocateTask().model
        return self._model

    def training_starts(self, n: int, seed: int) -> np.ndarray:
        return np.zeros((n, NQ))

    def robustness_starts(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        starts = rng.uniform(-START_NOISE, START_NOISE, (n, NQ))
        if not self.object_noise:
            starts[:, NQ_HAND:] = 0.0
        return starts

    def make_expert(self, seed: int = 0):
        from bmil.domains.adroit.expert import RelocateExpert

        return RelocateExpert(self.model, seed=seed)

    def robustness_figure(self, result, demos=None):
        from bmil.domains.adroit.figure import relocate_figure

        return relocate_figure(result, self.model, title=self.name)


relocate = partial(RelocateDomain, "relocate")
relocate_object_noise = partial(RelocateDomain, "relocate_object_noise", object_noise=True)
