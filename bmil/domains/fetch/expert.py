"""Scripted Fetch experts with seeded per-episode variation.

The training start is deterministic, so demonstrations differ only through the expert: each episode
draws its own approach height, push/grasp offsets, gain and action-noise level, and Gaussian action
noise is added every step (the feedback law recovers from it). The logic is a function of the
current observation only, so the expert also recovers from being knocked off course and works from
any robustness start. Everything is vectorised over a batch of environments.
"""

from __future__ import annotations

import numpy as np
import torch

from bmil.domains.fetch.env import SUCCESS_THRESHOLD

GRIP, OBJ, FINGERS = slice(0, 3), slice(3, 6), slice(9, 11)


class FetchExpert:
    """Base: per-episode parameters, noise and the P-controller shared by Push and PickAndPlace."""

    def __init__(self, goal: np.ndarray, noise: float = 0.1, seed: int = 0):
        self.goal = np.asarray(goal, dtype=np.float64)
        self.noise = noise
        self.reset(1, seed)

    def reset(self, num_envs: int, seed: int) -> None:
        """Draw new per-episode parameters for ``num_envs`` episodes, reproducibly from ``seed``."""
        self.rng = np.random.default_rng(seed)
        n = num_envs
        self.gain = self.rng.uniform(8.0, 14.0, (n, 1))
        self.noise_std = self.noise * self.rng.uniform(0.5, 1.5, (n, 1))
        self.hover = self.rng.uniform(0.05, 0.08, n)  # approach height above the object
        self.lateral = self.rng.uniform(-0.006, 0.006, n)  # off-centre contact / grasp point
        self._draw_task_params(n)

    def _draw_task_params(self, n: int) -> None:
        pass

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        o = obs.detach().cpu().numpy().astype(np.float64)
        if len(o) != len(self.gain):
            raise ValueError(f"expert was reset for {len(self.gain)} envs, got a batch of {len(o)}")
        target, gripper = self._plan(o)
        move = np.clip(self.gain * (target - o[:, GRIP]), -1.0, 1.0)
        move += self.noise_std * self.rng.standard_normal(move.shape)
        action = np.clip(np.concatenate([move, gripper[:, None]], axis=1), -1.0, 1.0)
        return torch.as_tensor(action, dtype=torch.float32)

    def _plan(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gripper target position (B, 3) and finger command (B,) for each observation."""
        raise NotImplementedError


class PushExpert(FetchExpert):
    """Lift, go behind the block on the goal line, lower, push; re-approach if it slips sideways."""

    def _draw_task_params(self, n: int) -> None:
        self.behind = self.rng.uniform(0.06, 0.07, n)  # pre-push point behind the block centre

    def _plan(self, o):
        grip, obj = o[:, GRIP], o[:, OBJ]
        to_goal = self.goal[:2] - obj[:, :2]
        dist = np.linalg.norm(to_goal, axis=1, keepdims=True)
        d = to_goal / np.maximum(dist, 1e-6)
        perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
        pre = obj[:, :2] - d * self.behind[:, None] + perp * self.lateral[:, None]
        rel = grip[:, :2] - obj[:, :2]
        along, across = (rel * d).sum(1), (rel * perp).sum(1)
        low_z, safe_z = obj[:, 2] - 0.005, obj[:, 2] + self.hover
        aligned = (along < -0.03) & (np.abs(across - self.lateral) < 0.015)
        pushing = aligned & (grip[:, 2] < obj[:, 2] + 0.015)
        above_pre = np.linalg.norm(grip[:, :2] - pre, axis=1) < 0.01

        # Default: travel to above the pre-push point, lifting first if low (not to hit the block).
        target = np.column_stack([pre, safe_z])
        low = grip[:, 2] < safe_z - 0.02
        target[low & ~above_pre] = np.column_stack([grip[:, :2], safe_z])[low & ~above_pre]
        # Above the pre-push point: lower to pushing height.
        target[above_pre] = np.column_stack([pre, low_z])[above_pre]
        # Behind the block and low: push towards the goal, re-aiming at the block every step and
        # slowing down near the goal so that the block does not slide past it.
        step = (self.behind[:, None] - 0.045) + np.minimum(dist, 0.5 * dist + 0.01)
        push_target = np.column_stack([pre + d * step, low_z])
        target[pushing] = push_target[pushing]
        # Block at the goal: lift off it and stay above, so that noise cannot nudge it away.
        done = dist[:, 0] < 0.4 * SUCCESS_THRESHOLD
        target[done] = np.column_stack([grip[:, :2], safe_z])[done]
        return target, np.full(len(o), -1.0)


class PickPlaceExpert(FetchExpert):
    """Open, hover above the object, lower, close, carry it to the goal in the air and hold it."""

    def _draw_task_params(self, n: int) -> None:
        self.grasp_depth = self.rng.uniform(-0.008, 0.004, n)  # grasp below/above the centre

    def _plan(self, o):
        grip, obj = o[:, GRIP], o[:, OBJ]
        width = o[:, FINGERS].sum(1)
        rel = obj - grip
        near_xy = np.linalg.norm(rel[:, :2], axis=1) < 0.012
        at_object = near_xy & (np.abs(rel[:, 2] - self.grasp_depth) < 0.012)
        grasped = (np.linalg.norm(rel, axis=1) < 0.03) & (width < 0.06) & (width > 0.02)

        hover = np.column_stack([obj[:, :2], obj[:, 2] + self.hover])
        target = hover.copy()
        fingers = np.ones(len(o))  # open while approaching
        lower = near_xy & ~at_object & ~grasped
        target[lower] = np.column_stack([obj[:, :2], obj[:, 2] - self.grasp_depth])[lower]
        closing = at_object & ~grasped
        target[closing] = grip[closing]
        fingers[closing | grasped] = -1.0
        target[grasped] = self.goal
        return target, fingers
