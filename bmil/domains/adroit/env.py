"""Adroit Relocate in the paper's fixed configuration (docs/domains.md#adroit-relocate).

gymnasium-robotics' ``AdroitHandRelocate-v1`` (the d4rl hand on its arm: 30 position actuators,
actions in [-1, 1] mapped to each actuator's range, 5 physics steps per env step), with the
original's changes: the ball always at body_pos (0, 0, 0.035) and the target site at
(0.1, 0.1, 0.25), set after every reset (the env's own reset re-draws both); success when the ball
is within 0.1 of the target, which ends the episode; 200 steps. Rewards are unused, so
gymnasium-robotics' warning about v1's reward versions does not apply.

Start rows are the 36 offsets added to the model's rest pose: 30 hand and arm joints, then the
ball's 3 translation and 3 rotation joints. Velocities start at zero (the original's).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

OBJECT_POS = (0.0, 0.0, 0.035)
TARGET_POS = (0.1, 0.1, 0.25)
SUCCESS_DISTANCE = 0.1
HORIZON = 200
NQ, NQ_HAND = 36, 30
OBS_DIM, ACT_DIM = 39, 30


class RelocateTask(gym.Env):
    """``reset(seed, options={"start": offsets})`` puts the hand at rest + offsets (36 values) with
    the fixed ball and target; observation: 30 hand qpos, palm - ball, palm - target, ball - target
    (float32)."""

    def __init__(self):
        from gymnasium_robotics.envs.adroit_hand.adroit_relocate import AdroitHandRelocateEnv

        self.hand = AdroitHandRelocateEnv()
        self.model, self.data = self.hand.model, self.hand.data
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        start = None if options is None else options.get("start")
        if start is None:
            raise ValueError(f"RelocateTask.reset needs options={{'start': {NQ} joint offsets}}")
        self.hand.reset(seed=seed)
        self.model.body_pos[self.hand.obj_body_id] = OBJECT_POS
        self.model.site_pos[self.hand.target_obj_site_id] = TARGET_POS
        qpos = self.hand.init_qpos + np.asarray(start, dtype=np.float64)
        self.hand.set_state(qpos, np.zeros(self.model.nv))
        self.t = 0
        return self._observation(), self._info()

    def step(self, action):
        self.hand.step(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))
        self.t += 1
        info = self._info()
        return self._observation(), float(info["is_success"]), info["is_success"], self.t >= HORIZON, info

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World positions of the palm (site S_grasp), the ball and the target."""
        d, h = self.data, self.hand
        return d.site_xpos[h.S_grasp_site_id].copy(), d.xpos[h.obj_body_id].copy(), d.site_xpos[h.target_obj_site_id].copy()

    def _info(self) -> dict:
        _, ball, target = self.positions()
        return {"is_success": bool(np.linalg.norm(ball - target) < SUCCESS_DISTANCE)}

    def _observation(self) -> np.ndarray:
        return self.hand._get_obs().astype(np.float32)

    def close(self):
        self.hand.close()
