"""A planning expert for the point mazes: shortest path over the cell graph, PD control along it.

The layout's breadth-first tree gives, for every free cell, the neighbour one step closer to the
goal. Each step the ball heads for the centre of the next cell on its path (so the straight line
stays inside two adjacent free cells and never clips a wall corner) and, once in the goal cell,
for the goal point. A PD law turns the target into a force: saturated towards the target, damped
by the velocity so it turns corners without bouncing off the far wall. The choice depends only on
the current observation, so the expert works from any start and recovers from noise.

Demonstrations differ through seeded per-episode gains, a per-episode offset of the waypoints
within their cells, and Gaussian action noise every step.
"""

from __future__ import annotations

import numpy as np
import torch

from bmil.domains.maze.layout import MazeLayout


class MazeExpert:
    """Vectorised over a batch of envs; ``reset(num_envs, seed)`` draws the per-episode noise."""

    def __init__(self, layout: MazeLayout, noise: float = 0.1, seed: int = 0):
        self.layout, self.noise = layout, noise
        self.reset(1, seed)

    def reset(self, num_envs: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        n, s = num_envs, self.layout.scaling
        self.gain = self.rng.uniform(1.0, 2.0, (n, 1))  # action per unit of position error
        self.damping = self.rng.uniform(0.25, 0.35, (n, 1))  # action per unit of velocity
        self.offset = self.rng.uniform(-0.15 * s, 0.15 * s, (n, 2))  # waypoints off the centres
        self.noise_std = self.noise * self.rng.uniform(0.5, 1.5, (n, 1))

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        o = obs.detach().cpu().numpy().astype(np.float64)
        if len(o) != len(self.gain):
            raise ValueError(f"expert was reset for {len(self.gain)} envs, got a batch of {len(o)}")
        xy, velocity = o[:, :2], o[:, 2:4]
        target = self.targets(xy)
        action = np.clip(self.gain * (target - xy) - self.damping * velocity, -1.0, 1.0)
        action += self.noise_std * self.rng.standard_normal(action.shape)
        return torch.as_tensor(np.clip(action, -1.0, 1.0), dtype=torch.float32)

    def targets(self, xy: np.ndarray) -> np.ndarray:
        """The next waypoint of every ball: the next cell's (offset) centre, or the goal point."""
        layout = self.layout
        cell = layout.free_cell_of(xy)
        nxt = layout.next_cell[cell[:, 0], cell[:, 1]]
        target = layout.cell_centre(nxt) + self.offset
        in_goal = (cell == layout.goal_cell).all(1)
        target[in_goal] = layout.goal_point
        return target
