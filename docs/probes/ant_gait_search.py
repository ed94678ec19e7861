"""How the ant expert's gait parameters were found (docs/domains.md#ant-mazes): the cross-entropy
method over the trot's 7 parameters (f, amp, lift, d0, kp, kd, psi) on the original's gear-10 ant
in the open, each setting scored by the steps to walk two 6-unit legs in random directions from
the env's reset noise, with 0.05 N(0, 1) action noise, a flip costing 300 steps.

This is the last of three rounds: a random search (150 settings, f in [0.3, 2] Hz) and a
single-leg cross-entropy search gave the start (0.73, 1.12, 0.553, 0.646, 10.7, 0.22, -1.17).
Run: python docs/probes/ant_gait_search.py [rounds]   (10 rounds: about 90 s on one core)
"""

import sys

import mujoco
import numpy as np

from bmil.domains.maze.ant import RESET_NOISE, STEP_SECONDS, ant_xml, upright, yaw
from bmil.domains.maze.ant_expert import ACTION_HIP, ANKLE_SIGN, LEG_ANGLE, TROT

MODEL = mujoco.MjModel.from_xml_string(ant_xml())  # the ant alone, on a 40 x 40 floor
DATA = mujoco.MjData(MODEL)
LOW = np.array([0.3, 0.3, 0.05, 0.5, 1, 0.0, -np.pi])
HIGH = np.array([2.0, 1.5, 0.8, 1.2, 30, 2.0, np.pi])


def walk(params, rng, legs=2, cap=150):
    """(steps, flipped) of one walk of ``legs`` 6-unit legs."""
    f, amp, lift, d0, kp, kd, psi = params
    m, d = MODEL, DATA
    mujoco.mj_resetData(m, d)
    qpos = m.qpos0 + rng.uniform(-RESET_NOISE, RESET_NOISE, 15)
    qpos[3:7] /= np.linalg.norm(qpos[3:7])
    d.qpos[:], d.qvel[:] = qpos, RESET_NOISE * rng.standard_normal(14)
    mujoco.mj_forward(m, d)
    phase0, t = rng.uniform(0, 2 * np.pi), 0
    for _ in range(legs):
        angle = rng.uniform(-np.pi, np.pi)
        target = d.qpos[:2] + 6 * np.array([np.cos(angle), np.sin(angle)])
        for _ in range(cap):
            delta = target - d.qpos[:2]
            if np.linalg.norm(delta) < 0.6:
                break
            bearing = np.arctan2(delta[1], delta[0]) - yaw(d.qpos[3:7])
            phase = 2 * np.pi * f * t * STEP_SECONDS + TROT + phase0
            q, qdot = d.qpos[7:15], d.qvel[6:14]
            action = np.empty(8)
            action[ACTION_HIP] = kp * (amp * np.sin(bearing - LEG_ANGLE) * np.cos(phase) - q[0::2]) - kd * qdot[0::2]
            action[ACTION_HIP + 1] = kp * (ANKLE_SIGN * (d0 + lift * np.sin(phase + psi)) - q[1::2]) - kd * qdot[1::2]
            d.ctrl[:] = np.clip(action + 0.05 * rng.standard_normal(8), -1, 1)
            mujoco.mj_step(m, d, nstep=5)
            t += 1
            if upright(d.qpos[3:7]) < 0:
                return t, True
        else:
            return t + cap, False
    return t, False


def score(params, trials, seed):
    rng = np.random.default_rng(seed)
    runs = np.array([walk(params, rng) for _ in range(trials)])
    return runs[:, 0].mean(), int(runs[:, 1].sum())


def main(rounds: int = 10):
    mean = np.array([0.73, 1.12, 0.553, 0.646, 10.7, 0.22, -1.17])
    std = (HIGH - LOW) / 6
    rng = np.random.default_rng(0)
    print("start", score(mean, 60, 99))
    for r in range(rounds):
        candidates = np.clip(mean + std * rng.standard_normal((32, 7)), LOW, HIGH)
        cost = np.array([(lambda s: s[0] + 300 * s[1])(score(p, 8, 1000 * r + k)) for k, p in enumerate(candidates)])
        elite = candidates[np.argsort(cost)[:6]]
        mean, std = elite.mean(0), elite.std(0) + 0.01 * (HIGH - LOW)
        print(r, np.sort(cost)[:3].round(1), mean.round(3))
    steps, flips = score(mean, 60, 99)
    print(f"final {mean.round(3).tolist()}: {steps:.1f} steps for two legs, {flips} flips in 60 walks")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
