"""One registry of domains: everything task-specific, so trainer, evaluator and CLI never branch.

A domain knows how to build its environment, draw seeded training and robustness start states,
build its expert, and draw its robustness picture. Later domains (mazes, Adroit) are new entries.
"""

from __future__ import annotations

import contextlib
import difflib
import io
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

# gymnasium-robotics prints a notice about Adroit reward versions to stderr on import; it does not
# concern the envs we use and would confuse users of every command.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics  # noqa: F401  (registers the Fetch and maze ids)

from bmil.errors import BMILError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from matplotlib.figure import Figure

    from bmil.evaluation import EvalResult


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
    def robustness_figure(self, result: EvalResult, demos: Mapping | None = None) -> Figure:
        """The paper's picture of which starts succeeded (``demos``: the loaded demos, or any
        mapping with "obs" and "episode", to draw over it where the picture supports that)."""

    # Per-cell evaluation (mazes): starts fall into groups whose rates are averaged unweighted.
    obs_bounds: tuple[np.ndarray, np.ndarray] | None = None  # where a state can be (None: anywhere)
    num_groups: int = 0

    def start_groups(self, starts: np.ndarray) -> np.ndarray | None:
        """Group id (e.g. maze cell) of every start row; None when results are not grouped."""
        return None

    def describe(self, result: EvalResult) -> str:
        """A text rendering of a robustness result beyond its rate (e.g. a per-cell grid)."""
        return ""


def _fetch_domains() -> dict[str, Domain]:
    from bmil.envs.fetch import FetchDomain
    from bmil.experts.fetch import PickPlaceExpert, PushExpert

    return {
        "push": FetchDomain("push", "FetchPush-v4", goal_height=0.0, expert=PushExpert),
        "pickplace": FetchDomain(
            "pickplace", "FetchPickAndPlace-v4", goal_height=0.2, expert=PickPlaceExpert
        ),
    }


def _maze_domains() -> dict[str, Domain]:
    from bmil.envs.maze import PointMazeDomain

    # 400 steps, the original's: the planner needs at most 282 (UMaze), 224 (Room5x11) and 217
    # (Corridor7x7) steps from any cell (measured over 20 starts per cell), so there is >= 1.4x slack.
    horizons = {"umaze": 400, "room5x11": 400, "corridor7x7": 400}
    domains = {}
    for maze, horizon in horizons.items():
        for suffix, time_feature in (("", False), ("_time", True)):
            name = f"point_{maze}{suffix}"
            domains[name] = PointMazeDomain(name, maze, horizon, time_feature)
    return domains


_DOMAINS: dict[str, Domain] = {}


def domain_names() -> list[str]:
    return sorted(_registry())


def _registry() -> dict[str, Domain]:
    if not _DOMAINS:
        _DOMAINS.update(_fetch_domains())
        _DOMAINS.update(_maze_domains())
    return _DOMAINS


def get_domain(name: str) -> Domain:
    """The domain registered as ``name``; a clear error naming the known ones otherwise."""
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(str(name), registry, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise BMILError(
            f"Unknown environment '{name}'.{hint} Known environments: {', '.join(sorted(registry))}."
        )
    return registry[name]
