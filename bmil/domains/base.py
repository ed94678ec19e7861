"""The contract every domain fulfils, so that methods, evaluation and the CLI never branch on one."""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np


class Domain(ABC):
    """A task: environment factory, start-state distributions, expert and robustness figure.

    Every episode starts from an explicit start row (``reset(options={"start": row})``), so a seeded
    list of rows fixes an evaluation exactly, whatever the number of worker processes.
    """

    name: str
    obs_dim: int
    act_dim: int
    horizon: int  # maximum steps of an episode
    terminates_on_success: bool  # episodes end at the first success (mazes) or run the horizon

    @abstractmethod
    def make_env(self) -> gym.Env:
        """A fresh environment whose ``reset`` takes ``options={"start": row}``."""

    @abstractmethod
    def training_starts(self, n: int, seed: int) -> np.ndarray:
        """``n`` start rows from the training (demonstration) start distribution."""

    @abstractmethod
    def robustness_starts(self, n: int, seed: int) -> np.ndarray:
        """``n`` start rows from the robustness distribution (outside the demonstrations)."""

    @abstractmethod
    def make_expert(self, seed: int = 0):
        """The scripted expert: a batch policy with ``reset(num_envs, seed)``."""

    @abstractmethod
    def robustness_figure(self, result, demos=None):
        """The paper's picture of which starts succeeded (``demos``: the loaded demos, or any
        mapping with "obs" and "episode", to draw over it where the picture supports that)."""

    # [name, size] of each part of the observation, in order (bmil export's record, docs/domains.md).
    observation_layout: tuple[tuple[str, int], ...] = ()
    # MuJoCo free-camera settings of rollout videos (lookat, distance, azimuth, elevation); None:
    # MuJoCo's default view of the whole model.
    render_camera: dict | None = None

    # Domains that share hyper-parameters (conf/<method>_<family>.yaml, chosen by ``bmil reproduce
    # search``); "" for none.
    family: str = ""

    # Info keys (bool) counted at the end of every evaluation episode, e.g. ("flipped",) for the ant.
    episode_flags: tuple[str, ...] = ()

    # Per-cell evaluation (mazes): starts fall into groups whose rates are averaged unweighted.
    obs_bounds: tuple[np.ndarray, np.ndarray] | None = None  # where a state can be (None: anywhere)
    num_groups: int = 0

    @property
    def key(self) -> str:
        """What tells this domain from any other in one process (worker processes cache envs by
        it): its name, unless one name can carry different settings."""
        return self.name

    def start_groups(self, starts: np.ndarray) -> np.ndarray | None:
        """Group id (e.g. maze cell) of every start row; None when results are not grouped."""
        return None

    def describe(self, result) -> str:
        """A text rendering of a robustness result beyond its rate (e.g. a per-cell grid)."""
        return ""
