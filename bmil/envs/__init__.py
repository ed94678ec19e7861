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
    def robustness_figure(self, result: EvalResult) -> Figure:
        """The paper's picture of which starts succeeded."""


def _fetch_domains() -> dict[str, Domain]:
    from bmil.envs.fetch import FetchDomain
    from bmil.experts.fetch import PickPlaceExpert, PushExpert

    return {
        "push": FetchDomain("push", "FetchPush-v4", goal_height=0.0, expert=PushExpert),
        "pickplace": FetchDomain(
            "pickplace", "FetchPickAndPlace-v4", goal_height=0.2, expert=PickPlaceExpert
        ),
    }


_DOMAINS: dict[str, Domain] = {}


def domain_names() -> list[str]:
    return sorted(_registry())


def _registry() -> dict[str, Domain]:
    if not _DOMAINS:
        _DOMAINS.update(_fetch_domains())
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
