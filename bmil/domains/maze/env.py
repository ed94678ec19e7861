"""Point mazes: the original's RegionUMaze, WallRoom5x11 and Corridor7x7 (docs/original-code.md).

Built from gymnasium-robotics' maze machinery (``Maze.make_maze`` writes the walls into the agent's
MJCF) and its point agent (``PointEnv``: a force-driven ball, speed clipped to 5 units/s, 0.01 s
physics step). The maps, cell sizes (UMaze 8, the others 4), start cells and goals are the
original's. ``MazeLayout`` (layout.py) converts between cells and coordinates.

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
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

from bmil.domains.maze.layout import MazeLayout

ACTION_REPEAT = 4  # physics steps per env step: ~0.2 units per step at full speed, as the original
RESET_NOISE = 0.1  # U(±0.1) on the start xy, 0.1 * N(0, 1) on the velocity (the original's)
TIME_SCALE = 0.001  # the original's time feature: 0.001 * t
MAX_SPEED = 5.0  # gymnasium-robotics' PointEnv clips each velocity component to ±5


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

