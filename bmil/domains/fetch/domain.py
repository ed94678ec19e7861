"""The Fetch domains: Push and PickAndPlace from the paper's fixed start, robustness over gripper
starts within 15 cm."""

from __future__ import annotations

from functools import partial

import numpy as np

from bmil.domains.base import Domain
from bmil.domains.fetch.env import ACT_DIM, HORIZON, OBS_DIM, ROBUSTNESS_RANGE, FetchTask
from bmil.domains.fetch.expert import PickPlaceExpert, PushExpert
from bmil.domains.fetch.figure import fetch_scatter


class FetchDomain(Domain):
    """A Fetch task (see ``bmil.domains.Domain`` for the contract)."""

    obs_dim, act_dim, horizon, terminates_on_success = OBS_DIM, ACT_DIM, HORIZON, False
    # gymnasium-robotics' Fetch "observation" (positions in m, velocities in m per env step of 0.04 s).
    observation_layout = (("grip_pos", 3), ("object_pos", 3), ("object_rel_pos", 3), ("gripper_state", 2),
                          ("object_rot", 3), ("object_velp", 3), ("object_velr", 3), ("grip_velp", 3),
                          ("gripper_vel", 2))
    family = "fetch"
    render_camera = {"lookat": (1.3, 0.75, 0.45), "distance": 1.1, "azimuth": 150.0, "elevation": -25.0}  # videos

    def __init__(self, name: str, env_id: str, goal_height: float, expert: type):
        self.name, self.env_id, self.goal_height, self.expert = name, env_id, goal_height, expert
        self._geometry = None

    def make_env(self) -> FetchTask:
        return FetchTask(self.env_id, self.goal_height)

    @property
    def geometry(self) -> dict[str, np.ndarray]:
        """Initial gripper xy, object and goal positions (read once from a built env)."""
        if self._geometry is None:
            env = self.make_env()
            self._geometry = {
                "gripper_xy": env.initial_gripper_xy,
                "object": env.object_xyz,
                "goal": env.goal,
            }
            env.close()
        return self._geometry

    def training_starts(self, n: int, seed: int) -> np.ndarray:
        # The training reset is deterministic: every start is the initial gripper position.
        return np.tile(self.geometry["gripper_xy"], (n, 1))

    def robustness_starts(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        offsets = rng.uniform(-ROBUSTNESS_RANGE, ROBUSTNESS_RANGE, size=(n, 2))
        return self.geometry["gripper_xy"] + offsets

    def make_expert(self, seed: int = 0):
        return self.expert(self.geometry["goal"], seed=seed)

    def robustness_figure(self, result, demos=None):
        return fetch_scatter(result, **self.geometry, title=self.name)


push = partial(FetchDomain, "push", "FetchPush-v4", goal_height=0.0, expert=PushExpert)
pickplace = partial(FetchDomain, "pickplace", "FetchPickAndPlace-v4", goal_height=0.2, expert=PickPlaceExpert)
