"""Point mazes: the original's RegionUMaze, WallRoom5x11 and Corridor7x7 (original-code-facts §7.2).

Built from gymnasium-robotics' maze machinery (``Maze.make_maze`` writes the walls into the agent's
MJCF) and its point agent (``PointEnv``: a force-driven ball, speed clipped to 5 units/s, 0.01 s
physics step). The maps, cell sizes (UMaze 8, the others 4), start cells and goals are the
original's. Coordinates are gymnasium-robotics' (map centred on the origin, x to the right along
columns, y *down* the rows); ``MazeLayout`` converts between cells and coordinates.

Speed: the original's point moved up to 0.2 units per step (20 steps per 4-unit cell). The
gymnasium ball moves about 0.05 units per 0.01 s physics step at full speed (5 units/s, clipped
before each physics step), so each env step repeats the action for ``ACTION_REPEAT`` = 4 physics
steps: 0.21 units per step (measured), about the original's number of steps per cell for both
cell sizes.

Start rows are ``[row, col, x, y]``: the cell and the ball's exact start position, drawn by the
domain from a seed; the episode seed adds the original's velocity noise 0.1 * N(0, 1).
"""

from __future__ import annotations

import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

from bmil.envs import Domain

ACTION_REPEAT = 4  # physics steps per env step: ~0.2 units per step at full speed, as the original
GOAL_RADIUS = 0.6  # success radius around a goal point (the original's, absolute units)
RESET_NOISE = 0.1  # U(±0.1) on the start xy, 0.1 * N(0, 1) on the velocity (the original's)
WALL_MARGIN = 1.0  # robustness starts keep this far from a wall side of their cell (the original's)
TIME_SCALE = 0.001  # the original's time feature: 0.001 * t
MAX_SPEED = 5.0  # gymnasium-robotics' PointEnv clips each velocity component to ±5

# Maps, rows top to bottom (row index grows down; B wall, . free, R start, G goal cell).
MAPS = {
    "umaze": ["BBBBB",
              "BR..B",
              "B...B",
              "BBB.B",
              "B...B",
              "BG..B",
              "BBBBB"],
    "room5x11": ["BBBBBBBBBBBBB",
                 "B.....B.....B",
                 "B.....B.....B",
                 "BR.........GB",
                 "B.....B.....B",
                 "B.....B.....B",
                 "BBBBBBBBBBBBB"],
    "corridor7x7": ["BBBBBBBBB",
                    "BR.B....B",
                    "B..B....B",
                    "B.....BBB",
                    "B.......B",
                    "BBB.....B",
                    "B....B..B",
                    "B....B.GB",
                    "BBBBBBBBB"],
}


@dataclass
class MazeLayout:
    """Geometry of a maze: walls, cell <-> coordinates, start, goal, success test, shortest paths.

    ``goal_quadrant`` (UMaze) makes the goal the quarter of the goal cell towards (sx, sy) from its
    centre, e.g. (-1, -1): x <= cx and y <= cy (the original's region x <= 0, y >= 32 in its
    y-up frame). Otherwise success is within ``GOAL_RADIUS`` of the goal cell's centre.
    """

    rows: list[str]
    scaling: float
    goal_quadrant: tuple[int, int] | None = None
    walls: np.ndarray = field(init=False)

    def __post_init__(self):
        self.walls = np.array([[c == "B" for c in r] for r in self.rows])
        self.n_rows, self.n_cols = self.walls.shape
        self.start_cell = self._find("R")
        self.goal_cell = self._find("G")
        # Free cells in row-major order; their index is the "cell id" of per-cell evaluations.
        self.free_cells = np.argwhere(~self.walls)
        self.cell_ids = -np.ones(self.walls.shape, dtype=np.int64)
        self.cell_ids[~self.walls] = np.arange(len(self.free_cells))
        self.next_cell = self._shortest_path_tree()

    def _find(self, char: str) -> np.ndarray:
        (cell,) = [(i, j) for i, r in enumerate(self.rows) for j, c in enumerate(r) if c == char]
        return np.array(cell)

    @property
    def maze_map(self) -> list[list[int]]:
        """The map in gymnasium-robotics' format (1 wall, 0 free)."""
        return self.walls.astype(int).tolist()

    # ---- coordinates (gymnasium-robotics' Maze.cell_rowcol_to_xy, vectorised) -------------------
    def cell_centre(self, cells: np.ndarray) -> np.ndarray:
        cells = np.asarray(cells, dtype=np.float64)
        x = (cells[..., 1] + 0.5) * self.scaling - self.n_cols * self.scaling / 2
        y = self.n_rows * self.scaling / 2 - (cells[..., 0] + 0.5) * self.scaling
        return np.stack([x, y], -1)

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """(row, col) of the cell containing each point."""
        xy = np.asarray(xy, dtype=np.float64)
        i = np.floor((self.n_rows * self.scaling / 2 - xy[..., 1]) / self.scaling)
        j = np.floor((xy[..., 0] + self.n_cols * self.scaling / 2) / self.scaling)
        cells = np.stack([i, j], -1).astype(np.int64)
        return np.clip(cells, 0, [self.n_rows - 1, self.n_cols - 1])

    def free_cell_of(self, xy: np.ndarray) -> np.ndarray:
        """Like ``cell_of``, but a point on the face of a wall counts in the free cell beside it."""
        cells = self.cell_of(xy)
        for nudge in ((0.2, 0), (-0.2, 0), (0, 0.2), (0, -0.2)):
            bad = self.walls[cells[:, 0], cells[:, 1]]
            if not bad.any():
                break
            cells[bad] = self.cell_of(np.asarray(xy)[bad] + nudge)
        return cells

    @property
    def goal_point(self) -> np.ndarray:
        """Where the expert heads: the goal point, or the centre of the goal quadrant."""
        centre = self.cell_centre(self.goal_cell)
        if self.goal_quadrant is None:
            return centre
        return centre + np.array(self.goal_quadrant) * self.scaling / 4

    def success(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        centre = self.cell_centre(self.goal_cell)
        if self.goal_quadrant is None:
            return np.linalg.norm(xy - centre, axis=-1) <= GOAL_RADIUS
        sx, sy = self.goal_quadrant
        return (sx * (xy[..., 0] - centre[0]) >= 0) & (sy * (xy[..., 1] - centre[1]) >= 0)

    def start_box(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) xy corners of a cell, shrunk by WALL_MARGIN on each side facing a wall."""
        i, j = cell
        centre, half = self.cell_centre(cell), self.scaling / 2
        low, high = centre - half, centre + half
        # Neighbours in x: columns j-1 (left, low x) / j+1; in y: rows i+1 (low y) / i-1.
        low[0] += WALL_MARGIN * self.walls[i, j - 1]
        high[0] -= WALL_MARGIN * self.walls[i, j + 1]
        low[1] += WALL_MARGIN * self.walls[i + 1, j]
        high[1] -= WALL_MARGIN * self.walls[i - 1, j]
        return low, high

    @property
    def xy_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Extent of the free space (inner faces of the outer walls)."""
        corners = self.cell_centre(self.free_cells)
        half = self.scaling / 2
        return corners.min(0) - half, corners.max(0) + half

    # ---- planning ----------------------------------------------------------------------------
    def _shortest_path_tree(self) -> np.ndarray:
        """next_cell[i, j]: the 4-neighbour one step closer to the goal cell (BFS from the goal);
        the goal cell points to itself, walls to (-1, -1)."""
        nxt = -np.ones((*self.walls.shape, 2), dtype=np.int64)
        goal = tuple(self.goal_cell)
        nxt[goal] = goal
        queue = deque([goal])
        while queue:
            i, j = queue.popleft()
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                n = (i + di, j + dj)
                if not self.walls[n] and nxt[n][0] < 0:
                    nxt[n] = (i, j)
                    queue.append(n)
        if (nxt[~self.walls] < 0).any():
            raise ValueError("every free cell must connect to the goal")
        return nxt

    def path_length(self, cell) -> int:
        """Cells between ``cell`` and the goal cell along the shortest path."""
        steps, cell = 0, tuple(cell)
        while cell != tuple(self.goal_cell):
            cell, steps = tuple(self.next_cell[cell]), steps + 1
        return steps


def make_layout(maze: str) -> MazeLayout:
    scaling = 8.0 if maze == "umaze" else 4.0
    return MazeLayout(MAPS[maze], scaling, goal_quadrant=(-1, -1) if maze == "umaze" else None)


class PointMazeTask(gym.Env):
    """The point agent in a maze. ``reset(seed, options={"start": [row, col, x, y]})`` places the
    ball at (x, y) with velocity noise; episodes end (terminated) on success, truncate at the
    horizon. Observation [x, y, vx, vy] (+ 0.001 * t with ``time_feature``), float32."""

    def __init__(self, layout: MazeLayout, horizon: int, time_feature: bool = False):
        from gymnasium_robotics.envs.maze import point
        from gymnasium_robotics.envs.maze.maze_v4 import Maze

        self.layout, self.horizon, self.time_feature = layout, horizon, time_feature
        agent_xml = Path(point.__file__).parents[1] / "assets" / "point" / "point.xml"
        # make_maze writes the MJCF into tempfile.gettempdir() and never deletes it: point it at a
        # private folder that disappears once the model is loaded.
        with tempfile.TemporaryDirectory(prefix="bmil_maze_") as private:
            saved, tempfile.tempdir = tempfile.tempdir, private
            try:
                _, xml = Maze.make_maze(str(agent_xml), layout.maze_map, layout.scaling, 0.4)
                self.point = point.PointEnv(xml_file=xml)
            finally:
                tempfile.tempdir = saved
        dim = 5 if time_feature else 4
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        start = None if options is None else options.get("start")
        if start is None:
            raise ValueError("PointMazeTask.reset needs options={'start': [row, col, x, y]}")
        qpos = np.asarray(start, dtype=np.float64)[2:4]
        qvel = RESET_NOISE * self.np_random.standard_normal(2)
        self.point.set_state(qpos, qvel)
        self.t = 0
        obs = self._observation()
        return obs, {"is_success": bool(self.layout.success(qpos))}

    def step(self, action):
        # PointEnv.step, inlined: clip the velocity, then one physics step. Its set_state ->
        # mj_forward and mj_rnePostConstraint do not change the trajectory (tested bit for bit)
        # and cost 60% of the time.
        model, data = self.point.model, self.point.data
        data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        for _ in range(ACTION_REPEAT):
            np.clip(data.qvel, -MAX_SPEED, MAX_SPEED, out=data.qvel)
            mujoco.mj_step(model, data)
        self.t += 1
        obs = self._observation()
        success = bool(self.layout.success(self.point.data.qpos[:2]))
        return obs, float(success), success, self.t >= self.horizon, {"is_success": success}

    def _observation(self) -> np.ndarray:
        state = np.concatenate([self.point.data.qpos, self.point.data.qvel])
        if self.time_feature:
            state = np.append(state, TIME_SCALE * self.t)
        return state.astype(np.float32)

    def close(self):
        self.point.close()


class PointMazeDomain(Domain):
    """Registry entry for a point maze (see ``bmil.envs.Domain``); per-cell robustness."""

    act_dim, terminates_on_success = 2, True

    def __init__(self, name: str, maze: str, horizon: int, time_feature: bool = False):
        self.name, self.maze, self.horizon, self.time_feature = name, maze, horizon, time_feature
        self.layout = make_layout(maze)
        self.obs_dim = 5 if time_feature else 4

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
        from bmil.experts.maze import MazeExpert

        return MazeExpert(self.layout, seed=seed)

    def robustness_figure(self, result, demos=None):
        from bmil.plots import maze_heatmap

        return maze_heatmap(result, self.layout, demos, title=self.name)

    def describe(self, result) -> str:
        from bmil.plots import maze_text_grid

        return maze_text_grid(result, self.layout)
