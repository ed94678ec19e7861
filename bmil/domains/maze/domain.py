"""The point-maze domains: UMaze, Room5x11 and Corridor7x7, each also with the original's time
feature (``point_<maze>_time``). Robustness is reported per cell, as the paper does."""

from __future__ import annotations

from functools import partial

import numpy as np

from bmil.domains.base import Domain
from bmil.domains.maze.env import MAX_SPEED, RESET_NOISE, TIME_SCALE, PointMazeTask
from bmil.domains.maze.layout import make_layout


class PointMazeDomain(Domain):
    """A point maze (see ``bmil.domains.Domain``); starts are grouped by cell."""

    act_dim, terminates_on_success = 2, True

    def __init__(self, name: str, maze: str, horizon: int, time_feature: bool = False):
        self.name, self.maze, self.horizon, self.time_feature = name, maze, horizon, time_feature
        self.layout = make_layout(maze)
        self.obs_dim = 5 if time_feature else 4
        self.observation_layout = (("x", 1), ("y", 1), ("vx", 1), ("vy", 1)) + ((("0.001 t", 1),) if time_feature else ())

    def make_env(self) -> PointMazeTask:
        return PointMazeTask(self.layout, self.horizon, self.time_feature)

    @property
    def obs_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where a state can be: the free space for xy, the speed clip for velocities."""
        (x0, y0), (x1, y1) = self.layout.xy_bounds
        low, high = [x0, y0, -MAX_SPEED, -MAX_SPEED], [x1, y1, MAX_SPEED, MAX_SPEED]
        if self.time_feature:
            low, high = low + [0.0], high + [TIME_SCALE * self.horizon]
        return np.array(low, np.float32), np.array(high, np.float32)

    def training_starts(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        cell = self.layout.start_cell
        xy = self.layout.cell_centre(cell) + rng.uniform(-RESET_NOISE, RESET_NOISE, (n, 2))
        return np.concatenate([np.tile(cell, (n, 1)), xy], 1)

    def robustness_starts(self, n: int, seed: int) -> np.ndarray:
        """``n`` starts dealt round-robin over the free cells (equal counts when ``n`` is a
        multiple of the number of cells), each uniform in its cell away from the walls."""
        rng = np.random.default_rng(seed)
        cells = self.layout.free_cells[np.arange(n) % len(self.layout.free_cells)]
        boxes = np.array([np.concatenate(self.layout.start_box(c)) for c in self.layout.free_cells])
        box = boxes[np.arange(n) % len(boxes)]
        xy = box[:, :2] + rng.uniform(0, 1, (n, 2)) * (box[:, 2:] - box[:, :2])
        return np.concatenate([cells, xy], 1)

    def start_groups(self, starts: np.ndarray) -> np.ndarray:
        cells = np.asarray(starts)[:, :2].astype(np.int64)
        return self.layout.cell_ids[cells[:, 0], cells[:, 1]]

    @property
    def num_groups(self) -> int:
        return len(self.layout.free_cells)

    def make_expert(self, seed: int = 0):
        from bmil.domains.maze.expert import MazeExpert

        return MazeExpert(self.layout, seed=seed)

    def robustness_figure(self, result, demos=None):
        from bmil.domains.maze.figure import maze_heatmap

        return maze_heatmap(result, self.layout, demos, title=self.name)

    def describe(self, result) -> str:
        from bmil.domains.maze.figure import maze_text_grid

        return maze_text_grid(result, self.layout)


# 400 steps, the original's: the planner needs at most 282 (UMaze), 224 (Room5x11) and 217
# (Corridor7x7) steps from any cell (measured over 20 starts per cell), so there is >= 1.4x slack.
HORIZON = 400
point_umaze = partial(PointMazeDomain, "point_umaze", "umaze", HORIZON)
point_room5x11 = partial(PointMazeDomain, "point_room5x11", "room5x11", HORIZON)
point_corridor7x7 = partial(PointMazeDomain, "point_corridor7x7", "corridor7x7", HORIZON)
point_umaze_time = partial(PointMazeDomain, "point_umaze_time", "umaze", HORIZON, True)
point_room5x11_time = partial(PointMazeDomain, "point_room5x11_time", "room5x11", HORIZON, True)
point_corridor7x7_time = partial(PointMazeDomain, "point_corridor7x7_time", "corridor7x7", HORIZON, True)
