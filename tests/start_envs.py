"""Environments whose starts are not what their settings say (tests of unseen starts, issue 65):
a point on a plane whose reset honours ``options={"xy": ...}``, and one whose reset ignores them."""

import gymnasium as gym
import numpy as np


class Plane(gym.Env):
    """A point on a plane moved by its action; success within 0.1 of the origin. Reset puts it at
    ``options["xy"]`` (default (0, 0)) plus the seed's uniform noise of 0.01."""

    honours_options = True

    def __init__(self):
        self.observation_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.xy = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        xy = (options or {}).get("xy", (0.0, 0.0)) if self.honours_options else (0.0, 0.0)
        self.xy = np.asarray(xy, dtype=np.float64) + self.np_random.uniform(-0.01, 0.01, 2)
        return self._get_obs(), {"is_success": False}

    def step(self, action):
        self.xy = np.clip(self.xy + 0.1 * np.asarray(action, dtype=np.float64), -5.0, 5.0)
        success = bool(np.linalg.norm(self.xy) < 0.1)
        return self._get_obs(), 0.0, False, False, {"is_success": success}

    def _get_obs(self):
        return self.xy.copy()


class IgnoresOptions(Plane):
    honours_options = False


def moves_nothing(env, rng):
    """A perturb hook that forgets to move the env."""
    return env._get_obs()


def moves_away(env, rng):
    env.xy = rng.uniform(1.0, 2.0, 2)
    return env._get_obs()


gym.register("Plane-v0", entry_point=Plane, max_episode_steps=20)
gym.register("IgnoresOptions-v0", entry_point=IgnoresOptions, max_episode_steps=20)
