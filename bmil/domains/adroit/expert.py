"""A scripted expert for Adroit Relocate: reach, grasp, lift and carry the ball to the target.

The arm's six joints are position servos (force = 500 ctrl - 200 q); each step a one-step
Cartesian inverse kinematics moves the palm (site S_grasp) towards the phase's waypoint:
dq = J^T (J J^T + 1e-4 I)^-1 e over three joints, q_cmd = q + 3 dq, and the servo command adds
gravity compensation and damping, ctrl = (200 q_cmd + gravity - 20 q') / 500. Approach, descent and
grasp move [ARTx, ARTz, ARRx] with the lift joint ARTy at 0 (it cannot go below 0); lift and carry
move [ARTx, ARTy, ARTz] with ARRx frozen at its grasp value. The fingers are weak servos whose
command is their target angle.

Phases: (0) hover above the grasp point until within 2 cm (at most 50 steps); (1) descend to it
until within 1.2 cm (at most 40 steps); (2) hold and close the fingers over a ramp of steps;
(3) lift 8 cm for 10 steps; (4) carry: palm target = palm + (target - ball).

The expert sees only observations: the palm and ball positions come from the observation's
differences to the fixed target, the joint velocities from successive observations, and the
Jacobian and gravity from its own copy of the model. Demonstrations differ through seeded script
parameters (hover height, grasp offset, approach speed, carry step, closing ramp), not through
action noise, which breaks the grasp (docs/domains.md#adroit-relocate).
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from bmil.domains.adroit.env import NQ_HAND, TARGET_POS

ARM_KP, ARM_KD, ARM_GAIN, IK_STEP, IK_DAMPING = 200.0, 20.0, 500.0, 3.0, 1e-4
REACH_JOINTS, CARRY_JOINTS = [0, 2, 3], [0, 1, 2]  # [ARTx, ARTz, ARRx] / [ARTx, ARTy, ARTz]
# Finger targets when closed (rad): per finger abduction 0, MCP 0.8, PIP 1.4, DIP 1.2; the little
# finger's metacarpal 0; the thumb THJ4..THJ0.
CLOSED = np.zeros(NQ_HAND)
for _first in (9, 13, 17, 22):  # FFJ2, MFJ2, RFJ2, LFJ2
    CLOSED[_first:_first + 3] = (0.8, 1.4, 1.2)
CLOSED[25:30] = (0.5, 1.0, 0.0, 0.5, -0.5)
HOVER, DESCEND, CLOSE, LIFT, CARRY = range(5)


class RelocateExpert:
    """Vectorised over a batch of envs stepped in lockstep; ``reset(num_envs, seed)`` restarts the
    script and draws each episode's parameters."""

    def __init__(self, model: mujoco.MjModel, seed: int = 0):
        self.model, self.data = model, mujoco.MjData(model)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
        self.step_seconds = model.opt.timestep * 5
        ctrl = model.actuator_ctrlrange
        self.act_mean, self.act_half = ctrl.mean(1), (ctrl[:, 1] - ctrl[:, 0]) / 2
        self.target = np.array(TARGET_POS)
        self.reset(1, seed)

    def reset(self, num_envs: int, seed: int) -> None:
        rng, n = np.random.default_rng(seed), num_envs
        self.hover = rng.uniform(0.05, 0.09, n)
        self.grasp_offset = np.stack([rng.uniform(-0.005, 0.005, n), rng.uniform(-0.045, -0.03, n),
                                      rng.uniform(0.005, 0.015, n)], 1)
        self.speed = rng.uniform(0.04, 0.06, n)
        self.carry_clip = rng.uniform(0.04, 0.06, n)
        self.close_steps = rng.integers(12, 19, n)
        self.phase = np.full(n, HOVER)
        self.phase_steps = np.zeros(n, dtype=np.int64)
        self.grasp_pitch = np.zeros(n)
        self.grasp_point = np.zeros((n, 3))
        self.previous_q = None

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        o = obs.detach().cpu().numpy().astype(np.float64)
        if len(o) != len(self.phase):
            raise ValueError(f"expert was reset for {len(self.phase)} envs, got a batch of {len(o)}")
        q = o[:, :NQ_HAND]
        qdot = np.zeros_like(q) if self.previous_q is None else (q - self.previous_q) / self.step_seconds
        self.previous_q = q.copy()
        palm, ball = self.target + o[:, 33:36], self.target + o[:, 36:39]
        actions = np.stack([self._act(i, q[i], qdot[i], palm[i], ball[i]) for i in range(len(o))])
        return torch.as_tensor(np.clip(actions, -1.0, 1.0), dtype=torch.float32)

    def _act(self, i: int, q, qdot, palm, ball) -> np.ndarray:
        """One env's action: advance its phase, then IK to the phase's waypoint and finger targets."""
        grasp = ball + self.grasp_offset[i]
        phase, steps = self.phase[i], self.phase_steps[i]
        if phase == HOVER and (np.linalg.norm(palm - grasp - [0, 0, self.hover[i]]) < 0.02 or steps >= 50):
            phase = DESCEND
        elif phase == DESCEND and (np.linalg.norm(palm - grasp) < 0.012 or steps >= 40):
            phase, self.grasp_point[i], self.grasp_pitch[i] = CLOSE, palm, q[3]
        elif phase == CLOSE and steps >= self.close_steps[i]:
            phase, self.grasp_point[i] = LIFT, palm + [0, 0, 0.08]
        elif phase == LIFT and steps >= 10:
            phase = CARRY
        self.phase_steps[i] = steps + 1 if phase == self.phase[i] else 1
        self.phase[i] = phase

        if phase == HOVER:
            goal, clip, joints = grasp + [0, 0, self.hover[i]], self.speed[i], REACH_JOINTS
        elif phase == DESCEND:
            goal, clip, joints = grasp, 0.02, REACH_JOINTS
        elif phase == CLOSE:
            goal, clip, joints = self.grasp_point[i], 0.02, REACH_JOINTS
        elif phase == LIFT:
            goal, clip, joints = self.grasp_point[i], self.carry_clip[i], CARRY_JOINTS
        else:
            goal, clip, joints = palm + (self.target - ball), self.carry_clip[i], CARRY_JOINTS
        error = goal - palm
        error *= min(1.0, clip / max(np.linalg.norm(error), 1e-9))

        q_cmd = q.copy()
        q_cmd[4:6] = 0.0  # ARRy, ARRz
        if joints is CARRY_JOINTS:
            q_cmd[3] = self.grasp_pitch[i]
        else:
            q_cmd[1] = 0.0  # ARTy held down while reaching
        jacobian, gravity = self._jacobian_and_gravity(q, qdot)
        J = jacobian[:, joints]
        q_cmd[joints] = q[joints] + IK_STEP * J.T @ np.linalg.solve(J @ J.T + IK_DAMPING * np.eye(3), error)
        ctrl = np.empty(NQ_HAND)
        ctrl[:6] = (ARM_KP * q_cmd[:6] + gravity[:6] - ARM_KD * qdot[:6]) / ARM_GAIN
        ctrl[6:] = self._closed(i) * CLOSED[6:]
        return (ctrl - self.act_mean) / self.act_half

    def _closed(self, i: int) -> float:
        """How far env ``i``'s fingers are closed: 0 before the grasp, a ramp while closing, then 1."""
        if self.phase[i] < CLOSE:
            return 0.0
        if self.phase[i] == CLOSE:
            return min(1.0, self.phase_steps[i] / self.close_steps[i])
        return 1.0

    def _jacobian_and_gravity(self, q, qdot) -> tuple[np.ndarray, np.ndarray]:
        """The palm's position Jacobian (3 x 30) and the bias forces at the hand's state."""
        m, d = self.model, self.data
        d.qpos[:NQ_HAND], d.qvel[:NQ_HAND] = q, qdot
        mujoco.mj_forward(m, d)
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jacp, None, self.site)
        return jacp[:, :NQ_HAND], d.qfrc_bias[:NQ_HAND].copy()
