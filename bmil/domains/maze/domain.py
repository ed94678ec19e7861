"""The maze domains: UMaze, Room5x11 and Corridor7x7, walked by a point (``point_<maze>``) or by the
original's ant (``ant_<maze>``), each also with the original's time feature (``<agent>_<maze>_time``).
Robustness is reported per cell, as the paper does; maps, starts, per-cell evaluation and figures
are the same for both agents."""

from __future__ import annotations

from functools import partial

import mujoco
import numpy as np

from bmil.domains.base import Domain
from bmil.domains.maze import ant
from bmil.domains.maze.env import MAX_SPEED, RESET_NOISE, TIME_SCALE, PointMazeTask
from bmil.domains.maze.layout import make_layout


class MazeDomain(Domain):
    """A maze (see ``bmil.domains.Domain``): start rows ``[row, col, x, y]``, grouped by cell; the
    agent subclasses name their observation (``agent_layout``, x and y first) and make the env,
    the expert and the bounds of the observation."""

    terminates_on_success = True
    agent_layout: tuple[tuple[str, int], ...] = ()

    def __init__(self, name: str, maze: str, horizon: int, time_feature: bool = False):
        self.name, self.maze, self.horizon, self.time_feature = name, maze, horizon, time_feature
        self.layout = make_layout(maze)
        self.observation_layout = self.agent_layout + ((("0.001 t", 1),) if time_feature else ())
        self.obs_dim = sum(size for _, size in self.observation_layout)

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

    def _bounds(self, low: list, high: list) -> tuple[np.ndarray, np.ndarray]:
        """Where a state can be: xy in the free space, then ``low``/``high`` for the agent's other
        entries, then the time feature's range."""
        (x0, y0), (x1, y1) = self.layout.xy_bounds
        low, high = [x0, y0, *low], [x1, y1, *high]
        if self.time_feature:
            low, high = low + [0.0], high + [TIME_SCALE * self.horizon]
        return np.array(low, np.float32), np.array(high, np.float32)

    def robustness_figure(self, result, demos=None):
        from bmil.domains.maze.figure import maze_heatmap

        return maze_heatmap(result, self.layout, demos, title=self.name)

    def describe(self, result) -> str:
        from bmil.domains.maze.figure import maze_text_grid

        return maze_text_grid(result, self.layout)


class PointMazeDomain(MazeDomain):
    """gymnasium-robotics' point (a force-driven ball) in a maze (bmil/domains/maze/env.py)."""

    act_dim, family = 2, "point_maze"
    agent_layout = (("x", 1), ("y", 1), ("vx", 1), ("vy", 1))

    def make_env(self) -> PointMazeTask:
        return PointMazeTask(self.layout, self.horizon, self.time_feature)

    @property
    def obs_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The free space for xy, the speed clip for velocities."""
        return self._bounds([-MAX_SPEED, -MAX_SPEED], [MAX_SPEED, MAX_SPEED])

    def make_expert(self, seed: int = 0):
        from bmil.domains.maze.expert import MazeExpert

        return MazeExpert(self.layout, seed=seed)


class AntMazeDomain(MazeDomain):
    """The original's ant in a maze (bmil/domains/maze/ant.py)."""

    act_dim, family = 8, "ant_maze"
    episode_flags = ("flipped",)  # no unhealthy termination: count the episodes that end upside down
    agent_layout = (("torso x, y, z", 3), ("torso quaternion w, x, y, z", 4),
                    ("hip_1, ankle_1, ..., hip_4, ankle_4 angles", 8),
                    ("torso velocity (linear xyz, angular xyz)", 6), ("joint velocities", 8))
    # Videos follow the torso (MuJoCo's tracking camera on body 1, the torso) from above and behind:
    # the whole maze from above would show the ant a few pixels wide.
    render_camera = {"type": mujoco.mjtCamera.mjCAMERA_TRACKING, "trackbodyid": 1, "distance": 14.0,
                     "azimuth": 90.0, "elevation": -55.0}

    def make_env(self) -> ant.AntMazeTask:
        return ant.AntMazeTask(self.layout, self.horizon, self.time_feature)

    @property
    def obs_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The free space for xy and nothing else, as the original's bounded_obs."""
        others = ant.NQ + ant.NV - 2
        return self._bounds([-np.inf] * others, [np.inf] * others)

    def make_expert(self, seed: int = 0):
        from bmil.domains.maze.ant_expert import AntMazeExpert

        return AntMazeExpert(self.layout, seed=seed)


# 400 steps, the original's: the planner needs at most 282 (UMaze), 224 (Room5x11) and 217
# (Corridor7x7) steps from any cell (measured over 20 starts per cell), so there is >= 1.4x slack.
HORIZON = 400
point_umaze = partial(PointMazeDomain, "point_umaze", "umaze", HORIZON)
point_room5x11 = partial(PointMazeDomain, "point_room5x11", "room5x11", HORIZON)
point_corridor7x7 = partial(PointMazeDomain, "point_corridor7x7", "corridor7x7", HORIZON)
point_umaze_time = partial(PointMazeDomain, "point_umaze_time", "umaze", HORIZON, True)
point_room5x11_time = partial(PointMazeDomain, "point_room5x11_time", "room5x11", HORIZON, True)
point_corridor7x7_time = partial(PointMazeDomain, "point_corridor7x7_time", "corridor7x7", HORIZON, True)

# The original's 400 steps (60 s) are too few for our ant: its scripted trot walks about 0.7 units/s,
# so the expert needs up to 471 (UMaze), 530 (Room5x11) and 346 (Corridor7x7) steps from a cell
# (100 starts per cell, docs/domains.md#ant-mazes). Each horizon leaves >= 1.4x that.
ANT_HORIZON = {"umaze": 700, "room5x11": 750, "corridor7x7": 500}
ant_umaze = partial(AntMazeDomain, "ant_umaze", "umaze", ANT_HORIZON["umaze"])
ant_room5x11 = partial(AntMazeDomain, "ant_room5x11", "room5x11", ANT_HORIZON["room5x11"])
ant_corridor7x7 = partial(AntMazeDomain, "ant_corridor7x7", "corridor7x7", ANT_HORIZON["corridor7x7"])
ant_umaze_time = partial(AntMazeDomain, "ant_umaze_time", "umaze", ANT_HORIZON["umaze"], True)
ant_room5x11_time = partial(AntMazeDomain, "ant_room5x11_time", "room5x11", ANT_HORIZON["room5x11"], True)
ant_corridor7x7_time = partial(AntMazeDomain, "ant_corridor7x7_time", "corridor7x7", ANT_HORIZON["corridor7x7"], True)
