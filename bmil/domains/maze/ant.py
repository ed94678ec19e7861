"""Ant mazes: the point mazes' maps walked by the original's ant (docs/domains.md#ant-mazes).

The ant is the original code's ``ant_dt3_gear10``: gymnasium-robotics' ant (the rllab body:
torso sphere, four two-joint legs, RK4) with a 0.03 s physics step, motor gear 10 and 5 physics
steps per env step, i.e. 0.15 s per step (the gymnasium ant: 0.01 s, gear 150, 0.05 s per step).
The walls are gymnasium-robotics' maze blocks (``Maze.make_maze``), real MuJoCo contacts.

Start rows are the point mazes' ``[row, col, x, y]``; the episode seed adds the original's noise
to everything else: U(±0.1) on the other 13 position coordinates (torso height, orientation,
joints), 0.1 * N(0, 1) on all 14 velocities. There is no unhealthy termination (the original has
none); ``info["flipped"]`` says whether the torso is upside down.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

from bmil.domains.maze.layout import MazeLayout

TIMESTEP, GEAR, FRAME_SKIP = 0.03, 10, 5  # the original's ant: 0.15 s per env step
STEP_SECONDS = TIMESTEP * FRAME_SKIP
MAZE_HEIGHT = 0.5  # wall height per unit of cell size (gymnasium-robotics' AntMaze)
RESET_NOISE = 0.1  # U(±0.1) on positions, 0.1 * N(0, 1) on velocities (the original's)
TIME_SCALE = 0.001  # the original's time feature: 0.001 * t
NQ, NV = 15, 14  # torso xyz + quaternion + 8 joints; 6 + 8 velocities
# Observation indices of the parts the expert and the figures read.
XY, QUAT, JOINTS, JOINT_VEL = slice(0, 2), slice(3, 7), slice(7, 15), slice(NQ + 6, NQ + 14)


def ant_xml() -> str:
    """gymnasium-robotics' ant with the original's physics step and gear, as MJCF text."""
    from gymnasium_robotics.envs import mujoco as assets

    tree = ET.parse(Path(assets.__file__).parent / "assets" / "ant.xml")
    tree.find("option").set("timestep", str(TIMESTEP))
    for motor in tree.find("actuator"):
        motor.set("gear", str(GEAR))
    return ET.tostring(tree.getroot(), encoding="unicode")


def maze_model(layout: MazeLayout) -> mujoco.MjModel:
    """The ant inside the maze's walls."""
    from gymnasium_robotics.envs.maze.maze_v4 import Maze

    # make_maze reads the agent from a file and writes the maze MJCF into tempfile.gettempdir()
    # without deleting it: both go to a private folder that disappears once the model is loaded.
    with tempfile.TemporaryDirectory(prefix="bmil_ant_maze_") as private:
        agent = Path(private) / "ant.xml"
        agent.write_text(ant_xml())
        saved, tempfile.tempdir = tempfile.tempdir, private
        try:
            _, xml = Maze.make_maze(str(agent), layout.maze_map, layout.scaling, MAZE_HEIGHT)
            return mujoco.MjModel.from_xml_path(xml)
        finally:
            tempfile.tempdir = saved


def upright(quaternion: np.ndarray) -> np.ndarray:
    """The z component of the torso's up axis (1 upright, < 0 upside down), from (w, x, y, z)."""
    q = np.asarray(quaternion, dtype=np.float64)
    return 1.0 - 2.0 * (q[..., 1] ** 2 + q[..., 2] ** 2) / (q ** 2).sum(-1)


def yaw(quaternion: np.ndarray) -> np.ndarray:
    """The torso's heading about z (rad), from (w, x, y, z)."""
    w, x, y, z = np.moveaxis(np.asarray(quaternion, dtype=np.float64), -1, 0)
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class AntMazeTask(gym.Env):
    """The ant in a maze. ``reset(seed, options={"start": [row, col, x, y]})`` places the torso at
    (x, y) with the original's noise on the rest; episodes end (terminated) on success, truncate at
    the horizon. Observation qpos[0:15] + qvel[0:14] (+ 0.001 * t with ``time_feature``), float32;
    action: 8 motor commands in [-1, 1] (gymnasium's order: hip_4, ankle_4, hip_1, ankle_1, ...)."""

    def __init__(self, layout: MazeLayout, horizon: int, time_feature: bool = False):
        self.layout, self.horizon, self.time_feature = layout, horizon, time_feature
        self.model = maze_model(layout)
        self.data = mujoco.MjData(self.model)
        self.rest_qpos = self.model.qpos0.copy()  # torso at 0.75, joints at 0 (gymnasium's and the original's)
        dim = NQ + NV + (1 if time_feature else 0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        start = None if options is None else options.get("start")
        if start is None:
            raise ValueError("AntMazeTask.reset needs options={'start': [row, col, x, y]}")
        rng = self.np_random
        qpos = self.rest_qpos + rng.uniform(-RESET_NOISE, RESET_NOISE, NQ)
        qpos[:2] = np.asarray(start, dtype=np.float64)[2:4]
        qpos[3:7] /= np.linalg.norm(qpos[3:7])
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = RESET_NOISE * rng.standard_normal(NV)
        mujoco.mj_forward(self.model, self.data)
        self.t = 0
        return self._observation(), self._info()

    def step(self, action):
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self.t += 1
        info = self._info()
        return self._observation(), float(info["is_success"]), info["is_success"], self.t >= self.horizon, info

    def _info(self) -> dict:
        return {"is_success": bool(self.layout.success(self.data.qpos[:2])),
                "flipped": bool(upright(self.data.qpos[3:7]) < 0)}

    def _observation(self) -> np.ndarray:
        state = np.concatenate([self.data.qpos, self.data.qvel])
        if self.time_feature:
            state = np.append(state, TIME_SCALE * self.t)
        return state.astype(np.float32)
