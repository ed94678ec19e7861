"""A scripted expert for the ant mazes: a trotting gait steered along the shortest path.

Planner: the layout's breadth-first tree gives the cells from the ant's cell to the goal; every
step the ant heads for the farthest of their centres (then the goal point) that it can see, i.e.
whose straight segment keeps ``CLEARANCE`` from every wall (line of sight), or else the next
cell's centre (the segment to it stays inside two adjacent free cells).

Gait: a central pattern generator with joint PD control and holonomic steering. Diagonal leg
pairs trot in antiphase (phase th_i = 2 pi f t + {0, pi, 0, pi}); each hip swings along the
heading, hip target = amp * sin(heading - leg angle) * cos(th_i), and each ankle lifts, target =
sign_i * (d0 + lift * sin(th_i + psi)); action = clip(kp (target - q) - kd q', -1, 1). The heading
is the waypoint's bearing in the body frame, so the body never turns and yaw drift is harmless.
The parameters were tuned for the original's ant (gear 10, 0.15 s steps) by the cross-entropy
method on the time to walk two 6-unit legs in random directions, with flips penalised (docs/domains.md#ant-mazes).

Demonstrations differ through a seeded start phase and gait frequency, per-episode offsets of
the waypoints within their cells and Gaussian action noise.
"""

from __future__ import annotations

import numpy as np
import torch

from bmil.domains.maze.ant import JOINT_VEL, JOINTS, QUAT, STEP_SECONDS, XY, yaw
from bmil.domains.maze.layout import MazeLayout

# Gait parameters (cross-entropy method, docs/domains.md#ant-mazes).
FREQUENCY, AMPLITUDE, LIFT, ANKLE_REST, KP, KD, LIFT_PHASE = 0.794, 1.296, 0.685, 0.653, 6.56, 0.464, -1.147
RAMP_STEPS = 5  # the swing grows over the first steps: the ant lands from its start height first
CLEARANCE = 1.0  # how far a line-of-sight segment keeps from every wall
LEG_ANGLE = np.deg2rad([45.0, 135.0, 225.0, 315.0])  # legs 1-4 in the body frame
ANKLE_SIGN = np.array([1.0, -1.0, -1.0, 1.0])
TROT = np.array([0.0, np.pi, 0.0, np.pi])
# Action index of hip_i (ankle_i is the next one): gymnasium's ant orders hip_4, ankle_4, hip_1, ...
ACTION_HIP = np.array([2, 4, 6, 0])


class AntMazeExpert:
    """Vectorised over a batch of envs stepped in lockstep; ``reset(num_envs, seed)`` starts the
    gait clock and draws the per-episode variations."""

    def __init__(self, layout: MazeLayout, noise: float = 0.05, seed: int = 0):
        self.layout, self.noise = layout, noise
        self.paths, self.path_ends = _paths_to_goal(layout)
        centres = layout.cell_centre(np.argwhere(layout.walls))
        self.walls = np.concatenate([centres - layout.scaling / 2, centres + layout.scaling / 2], 1)
        self.reset(1, seed)

    def reset(self, num_envs: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        n = num_envs
        self.phase0 = self.rng.uniform(0, 2 * np.pi, (n, 1))
        self.frequency = FREQUENCY * self.rng.uniform(0.95, 1.05, (n, 1))
        self.offset = self.rng.uniform(-0.1, 0.1, (n, 2)) * self.layout.scaling
        self.t = 0

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        o = obs.detach().cpu().numpy().astype(np.float64)
        if len(o) != len(self.offset):
            raise ValueError(f"expert was reset for {len(self.offset)} envs, got a batch of {len(o)}")
        delta = self.targets(o[:, XY]) - o[:, XY]
        heading = np.arctan2(delta[:, 1], delta[:, 0]) - yaw(o[:, QUAT])
        phase = 2 * np.pi * self.frequency * self.t * STEP_SECONDS + self.phase0 + TROT
        ramp = min(1.0, self.t / RAMP_STEPS)
        hip = ramp * AMPLITUDE * np.sin(heading[:, None] - LEG_ANGLE) * np.cos(phase)
        ankle = ANKLE_SIGN * (ANKLE_REST + ramp * LIFT * np.sin(phase + LIFT_PHASE))
        q, qdot = o[:, JOINTS], o[:, JOINT_VEL]  # hip_1, ankle_1, ..., hip_4, ankle_4
        action = np.empty((len(o), 8))
        action[:, ACTION_HIP] = KP * (hip - q[:, 0::2]) - KD * qdot[:, 0::2]
        action[:, ACTION_HIP + 1] = KP * (ankle - q[:, 1::2]) - KD * qdot[:, 1::2]
        action = np.clip(action, -1.0, 1.0) + self.noise * self.rng.standard_normal(action.shape)
        self.t += 1
        return torch.as_tensor(np.clip(action, -1.0, 1.0), dtype=torch.float32)

    def targets(self, xy: np.ndarray) -> np.ndarray:
        """Each ant's waypoint: the farthest visible point of its path (line of sight)."""
        layout = self.layout
        cell = layout.free_cell_of(xy)
        points = self.paths[cell[:, 0], cell[:, 1]] + self.offset[:, None]  # (B, P, 2), NaN-padded
        points[np.arange(len(xy)), self.path_ends[cell[:, 0], cell[:, 1]]] = layout.goal_point  # not offset
        visible = self._clear(xy, points) & ~np.isnan(points[:, :, 0])
        visible[:, 0] |= ~visible.any(1)  # none visible: the next cell's centre
        farthest = points.shape[1] - 1 - visible[:, ::-1].argmax(1)
        return points[np.arange(len(xy)), farthest]

    def _clear(self, xy: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(B, P): whether the segment xy -> point keeps CLEARANCE from every wall block (slab test
        of the segment against each block grown by CLEARANCE)."""
        low = self.walls[:, :2] - CLEARANCE  # (W, 2)
        high = self.walls[:, 2:] + CLEARANCE
        start = xy[:, None, None, :]  # (B, 1, 1, 2)
        d = points[:, :, None, :] - start  # (B, P, 1, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (low - start) / d, (high - start) / d
        parallel = d == 0
        inside = (start >= low) & (start <= high)
        t_near = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)).max(-1)
        t_far = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)).min(-1)
        hits = (t_near <= t_far) & (t_far >= 0) & (t_near <= 1)
        return ~hits.any(-1)


def _paths_to_goal(layout: MazeLayout) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols, P, 2): for every free cell the centres of the cells after it on its shortest
    path to the goal (the goal cell last; the goal cell itself lists only itself), NaN-padded; and
    (rows, cols): the index of each path's last entry, the goal cell."""
    paths, longest = {}, 1
    for i, j in layout.free_cells:
        cells, cell = [], (i, j)
        while cell != tuple(layout.goal_cell):
            cell = tuple(layout.next_cell[cell])
            cells.append(cell)
        paths[i, j] = cells or [cell]
        longest = max(longest, len(paths[i, j]))
    table = np.full((*layout.walls.shape, longest, 2), np.nan)
    ends = np.zeros(layout.walls.shape, dtype=np.int64)
    for (i, j), cells in paths.items():
        table[i, j, :len(cells)] = layout.cell_centre(np.array(cells))
        ends[i, j] = len(cells) - 1
    return table, ends
