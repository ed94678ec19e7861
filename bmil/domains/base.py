"""The contract every domain fulfils, so that methods, evaluation and the CLI never branch on one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import gymnasium as gym
import numpy as np

from bmil.domains.starts import SAMPLE, not_unseen, refuse_or_warn, reset_first_observations


@dataclass(frozen=True)
class ActionScale:
    """The policy acts in [-1, 1] (tanh); an environment whose action box is another one gets the
    policy's actions rescaled to it. One object for the environment wrapper (``to_env``), the demo
    readers (``to_unit``) and ``bmil export`` (the bounds, rescaled inside the exported module)."""

    low: Optional[np.ndarray] = None  # (act_dim,) float64; None: the domain declares no box (its actions are [-1, 1])
    high: Optional[np.ndarray] = None

    @property
    def declared(self) -> bool:
        """Whether the domain declares its box (demonstrated actions are then checked against it)."""
        return self.low is not None

    @cached_property  # asked at every environment step
    def rescales(self) -> bool:
        return self.declared and bool(np.any(self.low != -1) or np.any(self.high != 1))

    def to_env(self, unit: np.ndarray) -> np.ndarray:
        """The policy's [-1, 1] actions in the environment's box (float64)."""
        if not self.rescales:
            return unit
        return self.low + (np.asarray(unit, dtype=np.float64) + 1.0) * 0.5 * (self.high - self.low)

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """The environment's actions (demonstrated ones) as the policy's [-1, 1] actions."""
        if not self.rescales:
            return actions
        return 2.0 * (actions - self.low) / (self.high - self.low) - 1.0

    def bounds(self, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the environment's box, [-1, 1] where it is the policy's own."""
        if not self.declared:
            return -np.ones(act_dim), np.ones(act_dim)
        return self.low, self.high


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
    # The keys of a dict observation the policy sees, in order (demo readers take them from a dataset's
    # observation groups); () where observations are flat.
    obs_keys: tuple[str, ...] = ()
    # How the policy's [-1, 1] actions map to the environment's box (default: they are the same).
    action_scale: ActionScale = ActionScale()
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

    # What a start check that fails does: "refuse" (an error) or "warn" (configured envs may choose).
    starts_check: str = "refuse"

    def check_unseen(self, rows: np.ndarray, what: str, refuse: bool = True) -> None:
        """Refuse (or, with ``refuse`` False or ``starts_check`` "warn", warn about) robustness start
        ``rows`` that are not unseen: the training start's states, or one state repeated
        (``bmil.domains.starts``); each list is judged once."""
        key = (len(rows), hash(np.ascontiguousarray(rows).tobytes()))
        checked = self.__dict__.setdefault("_checked_starts", set())
        if key in checked:
            return
        if self._training_sample is None:
            self._training_sample = self.first_observations(self.training_starts(SAMPLE, 0))
        problem = not_unseen(self._training_sample, self.first_observations(rows))
        if problem:
            refuse_or_warn(f"{what} of {self.name} are not unseen: {problem}. {self.why_starts_repeat()}",
                           refuse and self.starts_check == "refuse")
        checked.add(key)

    def check_start_settings(self) -> None:
        """Refuse start settings that change nothing (configured envs: ``GymDomain``)."""

    def first_observations(self, rows: np.ndarray) -> np.ndarray:
        """The first observation of every start row (here: of the first ``SAMPLE`` rows, each reset in a
        fresh environment)."""
        return reset_first_observations(self, rows[:SAMPLE])

    def why_starts_repeat(self) -> str:
        """What to do about starts that are not unseen."""
        return f"The domain '{self.name}' sets its starts itself: this is a bug in it."

    # The start checks' memory (with the lists judged), per process: workers start without it.
    _training_sample: np.ndarray | None = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_training_sample", "_checked_starts")}
