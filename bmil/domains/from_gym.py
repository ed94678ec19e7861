"""Any gymnasium environment as a bmil domain, by configuration (docs/your-own-task.md).

    model:
      init_args:
        env:
          id: PointMaze_UMaze-v3                 # any registered id, or "package.module:EnvId"
          kwargs: {continuing_task: false}
          obs_keys: [observation, desired_goal]  # a dict observation: these keys, flattened in order
          success: info                          # info[success_key], "terminated", or "distance"
          success_key: success
          horizon: 300
          robustness: {choices: [{reset_cell: [1, 1]}, {reset_cell: [3, 3]}]}

A start is a row ``[kind, reset seed, choice, noise..., first observation...]`` drawn from a seed,
so a seeded list of starts fixes an evaluation whatever the number of worker processes; the first
observation rides along for the figure and is not used to reset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Optional

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

from bmil.domains.base import ActionScale, Domain
from bmil.domains.gym_starts import (StartSettings, check_noise_support, import_hook, kind_of, settings_without_effect,
                                     start_from)
from bmil.domains.starts import refuse_or_warn
from bmil.errors import BMILError
from bmil.loading import unsearched_folder_hint


@dataclass
class GymEnvSpec:
    """A gymnasium environment as a bmil domain.

    Args:
        id: The gymnasium id (registered, or "package.module:EnvId" to import its module first).
        kwargs: Keyword arguments of ``gym.make``.
        name: The domain's name in folders and titles (default: the id).
        obs_keys: For a dict observation, the keys the policy sees, flattened and concatenated in
            this order; empty for a Box observation (flattened).
        success: How success is read: "info" (``info[success_key]`` is true), "terminated" (the
            env terminated), or "distance" (the distance between the observation keys
            ``distance_keys`` is at most ``distance_threshold``).
        success_key: The info key of success "info".
        distance_keys: The two observation keys compared by success "distance".
        distance_threshold: The success distance.
        horizon: Steps per episode (0: the env's ``max_episode_steps``).
        terminates_on_success: Episodes end at their first success (else they run the horizon and
            success is judged at the final step).
        training: The training (demonstration) start.
        robustness: The robustness starts (outside the demonstrations).
        figure: The two first-observation coordinates of the robustness scatter.
        state_bounds: [low, high], each a list of the policy's observation size: where a state can
            be, for traces.bound_states (default: the observation space's bounds, where all are finite).
        starts_check: Robustness starts that are not unseen (the training start's state, or one state
            repeated) and start settings that change nothing are refused before any work ("refuse"),
            or only warned about ("warn").
    """

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    obs_keys: list[str] = field(default_factory=list)
    success: Literal["info", "terminated", "distance"] = "info"
    success_key: str = "is_success"
    distance_keys: list[str] = field(default_factory=lambda: ["achieved_goal", "desired_goal"])
    distance_threshold: float = 0.05
    horizon: int = 0
    terminates_on_success: bool = True
    training: StartSettings = field(default_factory=StartSettings)
    robustness: StartSettings = field(default_factory=StartSettings)
    figure: list[int] = field(default_factory=lambda: [0, 1])
    state_bounds: Optional[list[list[float]]] = None
    starts_check: Literal["refuse", "warn"] = "refuse"

    def __post_init__(self):
        for key in ("training", "robustness"):
            value = getattr(self, key)
            if isinstance(value, dict):
                setattr(self, key, StartSettings(**value))
            settings = getattr(self, key)
            for noise in ("qpos_noise", "qvel_noise"):  # YAML and JSON may give the indices as strings
                setattr(settings, noise, {int(i): float(s) for i, s in getattr(settings, noise).items()})


def spec_of(value) -> GymEnvSpec:
    """``value`` (a spec, or its dict as configs and checkpoints hold it) as a ``GymEnvSpec``."""
    if isinstance(value, GymEnvSpec):
        return value
    unknown = set(value) - set(GymEnvSpec.__dataclass_fields__)
    if unknown or "id" not in value:
        raise BMILError(f"model.env: {'unknown keys ' + ', '.join(sorted(unknown)) if unknown else 'no id'}. "
                        f"An environment is given by the keys {', '.join(GymEnvSpec.__dataclass_fields__)} "
                        "(docs/your-own-task.md), or as a domain name.")
    return GymEnvSpec(**value)


def spec_key(spec: GymEnvSpec) -> str:
    """Two configured environments are the same domain only if every setting is the same."""
    return "gym:" + json.dumps(asdict(spec), sort_keys=True, default=str)


class GymDomain(Domain):
    """A domain built from a ``GymEnvSpec``; it has no scripted expert (bring demonstrations)."""

    def __init__(self, spec: GymEnvSpec):
        self.spec = spec
        self.name = spec.name or spec.id
        env = _make(spec)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise BMILError(f"{spec.id}: the action space is {env.action_space}; bmil's policies need a "
                            "continuous (Box) action space.")
        self.act_dim = int(np.prod(env.action_space.shape))
        # The policy acts in [-1, 1] (tanh); the env gets actions rescaled to its bounds.
        low = env.action_space.low.ravel().astype(np.float64)
        high = env.action_space.high.ravel().astype(np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise BMILError(f"{spec.id}'s action space {env.action_space} is unbounded; bmil's policies act in "
                            "a bounded box: wrap the env so that its actions are bounded.")
        self.action_scale = ActionScale(low, high)
        self.obs_keys = tuple(spec.obs_keys)
        obs, _ = env.reset(seed=0)
        self.obs_dim = len(flatten_obs(obs, spec.obs_keys, spec.id))
        self.obs_part_sizes = [int(np.size(obs[k])) for k in spec.obs_keys] if isinstance(obs, dict) else []
        self.horizon = _horizon(spec) or (env.spec.max_episode_steps if env.spec else 0) or 0
        if self.horizon <= 0:
            raise BMILError(f"{spec.id} has no max_episode_steps: set model.env.horizon (steps per episode).")
        if spec.success == "info":
            _check_success_key(env, spec)
        if spec.success == "distance":
            _check_distance_keys(obs, spec)
        if len(spec.figure) != 2 or not all(0 <= k < self.obs_dim for k in spec.figure):
            raise BMILError(f"model.env.figure {spec.figure}: two observation indices in 0..{self.obs_dim - 1}.")
        for kind in ("training", "robustness"):
            settings: StartSettings = getattr(spec, kind)
            if settings.perturb:
                import_hook(settings.perturb, f"model.env.{kind}.perturb")
            if settings.qpos_noise or settings.qvel_noise:
                check_noise_support(env.unwrapped, spec.id, settings, kind)
        self.terminates_on_success = spec.terminates_on_success
        self.obs_bounds = _state_bounds(env.observation_space, spec, self.obs_dim)
        self.starts_check = spec.starts_check
        self._starts: dict[tuple, np.ndarray] = {}  # drawn start lists, by (kind, n, seed)
        env.close()

    @property
    def key(self) -> str:
        return spec_key(self.spec)

    def make_env(self) -> gym.Env:
        return _Starts(_make(self.spec, self.horizon), self.spec, self.action_scale)

    def training_starts(self, n: int, seed: int) -> np.ndarray:
        return _draw_starts(self, "training", n, seed)

    def robustness_starts(self, n: int, seed: int) -> np.ndarray:
        return _draw_starts(self, "robustness", n, seed)

    def make_expert(self, seed: int = 0):
        raise BMILError(f"'{self.name}' has no scripted expert: bring demonstrations (model.demos.path: a "
                        "Minari dataset, an HDF5 or .npz file; docs/your-own-task.md).")

    def robustness_figure(self, result, demos=None):
        i, j = self.spec.figure
        first_obs = np.asarray(result.starts)[:, -self.obs_dim:]
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ok = np.asarray(result.success, dtype=bool)
        ax.scatter(first_obs[~ok, i], first_obs[~ok, j], s=6, c="tab:red", label="failure")
        ax.scatter(first_obs[ok, i], first_obs[ok, j], s=6, c="tab:green", label="success")
        ax.set_xlabel(f"first observation [{i}]")
        ax.set_ylabel(f"first observation [{j}]")
        ax.set_title(f"{self.name}: success by start", fontsize=9)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return fig

    def first_observations(self, rows: np.ndarray) -> np.ndarray:
        """Recorded in every row when it was drawn."""
        return np.asarray(rows)[:, -self.obs_dim:]

    def check_start_settings(self) -> None:
        found = self._without_effect()
        if found:
            refuse_or_warn(f"start settings of {self.name} that change nothing: {'; '.join(found)}. {_FIX}",
                           self.starts_check == "refuse")

    def why_starts_repeat(self) -> str:
        found = self._without_effect()
        return (f"Settings that change nothing: {'; '.join(found)}. {_FIX}" if found else
                "Each of its start settings changes the first observation, but together they give starts that overlap "
                f"the training start's: widen model.env.robustness, or set model.env.starts_check: warn to measure anyway")

    def _without_effect(self) -> list[str]:
        """Start settings that change nothing; training options that repeat the reset's own default are
        harmless and left out."""
        env = _make(self.spec, self.horizon)
        try:
            found = [found for kind in ("training", "robustness")
                     for found in settings_without_effect(env, getattr(self.spec, kind), kind, _draw(self, kind, 3, 0),
                                                          lambda obs: flatten_obs(obs, self.spec.obs_keys, self.spec.id))]
        finally:
            env.close()
        return [f for f in found if not f.startswith("model.env.training.options")]

    def __getstate__(self):  # workers get the spec, not the drawn start lists
        return {**super().__getstate__(), "_starts": {}}


_FIX = ("Make the env's reset honour them, or move the env to each start with model.env.<training|robustness>.perturb "
        "(docs/your-own-task.md); model.env.starts_check: warn measures anyway")


class _Starts(gym.Wrapper):
    """Resets to a start row, flattens the observation and reports success as ``is_success``."""

    def __init__(self, env: gym.Env, spec: GymEnvSpec, scale: ActionScale):
        super().__init__(env)
        self.spec_, self.scale = spec, scale

    def reset(self, *, seed=None, options=None):
        row = (options or {}).get("start")
        if row is None:
            raise BMILError("bmil resets a configured env with options={'start': row}.")
        obs, info = start_from(self.env, getattr(self.spec_, kind_of(row)), kind_of(row), row)
        return flatten_obs(obs, self.spec_.obs_keys, self.spec_.id), {**info, "is_success": self._success(obs, info, False)}

    def step(self, action):
        if self.scale.rescales:
            action = self.scale.to_env(action).astype(self.env.action_space.dtype).reshape(self.env.action_space.shape)
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = self._success(obs, info, terminated)
        info = {**info, "is_success": success}
        terminated = bool(terminated or (self.spec_.terminates_on_success and success))
        return flatten_obs(obs, self.spec_.obs_keys, self.spec_.id), reward, terminated, truncated, info

    def _success(self, obs, info, terminated) -> bool:
        spec = self.spec_
        if spec.success == "terminated":
            return bool(terminated)
        if spec.success == "distance":
            a, b = (np.asarray(obs[k], dtype=np.float64) for k in spec.distance_keys)
            return bool(np.linalg.norm(a - b) <= spec.distance_threshold)
        return bool(info.get(spec.success_key, False))


def _draw_starts(domain: GymDomain, kind: str, n: int, seed: int) -> np.ndarray:
    """``n`` seeded starts; each is reset once here to record its first observation, so the lists
    are kept (an evaluation every few epochs draws the same ones)."""
    if (kind, n, seed) not in domain._starts:
        domain._starts[(kind, n, seed)] = _draw(domain, kind, n, seed)
    return domain._starts[(kind, n, seed)].copy()


def _draw(domain: GymDomain, kind: str, n: int, seed: int) -> np.ndarray:
    settings: StartSettings = getattr(domain.spec, kind)
    rng = np.random.default_rng([seed, 0 if kind == "training" else 1])
    scales = np.array([*settings.qpos_noise.values(), *settings.qvel_noise.values()], dtype=np.float64)
    rows = np.zeros((n, 3 + len(scales) + domain.obs_dim))
    rows[:, 0] = 0.0 if kind == "training" else 1.0
    rows[:, 1] = rng.integers(0, 2**31 - 1, n)
    rows[:, 2] = rng.integers(0, len(settings.choices), n) if settings.choices else 0
    rows[:, 3: 3 + len(scales)] = rng.uniform(-1.0, 1.0, (n, len(scales))) * scales
    env = _make(domain.spec, domain.horizon)
    for row in rows:  # the first observation, for the figure
        obs, _ = start_from(env, settings, kind, row)
        row[3 + len(scales):] = flatten_obs(obs, domain.spec.obs_keys, domain.spec.id)
    env.close()
    return rows


def flatten_obs(obs, keys: list[str], env_id: str) -> np.ndarray:
    """The observation the policy sees: a Box observation flattened, or a dict's ``keys`` flattened
    and concatenated in order."""
    if isinstance(obs, dict):
        if not keys:
            raise BMILError(f"{env_id} observes a dict ({', '.join(obs)}): choose the keys the policy sees "
                            f"with model.env.obs_keys, e.g. [{', '.join(obs)}].")
        missing = [k for k in keys if k not in obs]
        if missing:
            raise BMILError(f"model.env.obs_keys: {', '.join(missing)} not in {env_id}'s observation "
                            f"(its keys: {', '.join(obs)}).")
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in keys])
    if keys:
        raise BMILError(f"model.env.obs_keys is set but {env_id} observes an array, not a dict: leave it empty.")
    return np.asarray(obs, dtype=np.float64).ravel()


def _state_bounds(space, spec: GymEnvSpec, obs_dim: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The given ``state_bounds``, or the observation space's bounds of what the policy sees (its
    keys, flattened in order) where every one is finite; None otherwise."""
    if spec.state_bounds is not None:
        bounds = [np.asarray(b, dtype=np.float64) for b in spec.state_bounds] if len(spec.state_bounds) == 2 else []
        if len(bounds) != 2 or any(b.shape != (obs_dim,) for b in bounds) or not np.all(bounds[0] <= bounds[1]):
            raise BMILError(f"model.env.state_bounds: [low, high], two lists of {obs_dim} numbers (the policy's "
                            "observation size), low <= high.")
        return bounds[0], bounds[1]
    parts = [space[k] for k in spec.obs_keys] if isinstance(space, gym.spaces.Dict) else [space]
    if not all(isinstance(p, gym.spaces.Box) for p in parts):
        return None
    low = np.concatenate([p.low.ravel() for p in parts]).astype(np.float64)
    high = np.concatenate([p.high.ravel() for p in parts]).astype(np.float64)
    return (low, high) if np.isfinite(low).all() and np.isfinite(high).all() else None


def _check_distance_keys(obs, spec: GymEnvSpec) -> None:
    if not isinstance(obs, dict) or len(spec.distance_keys) != 2 or any(k not in obs for k in spec.distance_keys):
        have = ", ".join(obs) if isinstance(obs, dict) else "none (an array observation)"
        raise BMILError(f"model.env.success 'distance' compares two observation keys (distance_keys, now "
                        f"{spec.distance_keys}); {spec.id}'s keys: {have}.")


def _horizon(spec: GymEnvSpec) -> int:
    """Steps per episode the settings give: ``horizon``, or gymnasium's own ``max_episode_steps``
    among the kwargs (the same setting under gym.make's name); both only if they agree."""
    steps = spec.kwargs.get("max_episode_steps")
    if steps is None:
        return spec.horizon
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BMILError(f"model.env.kwargs.max_episode_steps = {steps!r}: a number of steps, 1 or more "
                        "(or leave it out and set model.env.horizon).")
    if spec.horizon and spec.horizon != steps:
        raise BMILError(f"model.env.kwargs.max_episode_steps ({steps}) and model.env.horizon ({spec.horizon}) "
                        "both set the steps per episode, differently: keep one of them.")
    return steps


def _make(spec: GymEnvSpec, horizon: int = 0) -> gym.Env:
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "max_episode_steps"}
    steps = horizon or _horizon(spec)
    if steps:
        kwargs["max_episode_steps"] = steps
    try:
        return gym.make(spec.id, **kwargs)
    except ImportError as e:
        original = e.__cause__ if isinstance(e.__cause__, ImportError) else e
        hint = unsearched_folder_hint(original.name) if isinstance(original, ModuleNotFoundError) else ""
        raise BMILError(f"model.env.id '{spec.id}': {original}{hint}. Install the package that provides the environment "
                        "into this Python environment, or correct the module's name before the ':'.") from None
    except gym.error.Error as e:
        raise BMILError(f"model.env.id '{spec.id}': {e}. Give a registered gymnasium id, or "
                        "'package.module:EnvId' to import the module that registers it.") from None
    except TypeError as e:
        raise BMILError(f"model.env.kwargs {spec.kwargs} do not fit {spec.id} ({e}).") from None
    except Exception as e:  # the environment's own constructor refused its settings
        raise BMILError(f"model.env: gym.make('{spec.id}', **{kwargs}) failed ({type(e).__name__}: {e}). "
                        "Check model.env.kwargs against the environment's documentation.") from None


def _check_success_key(env: gym.Env, spec: GymEnvSpec) -> None:
    """Success read from ``info[success_key]`` needs the key in the info of a step."""
    env.reset(seed=0)
    middle = (env.action_space.low + env.action_space.high) / 2
    _, _, _, _, info = env.step(middle.astype(env.action_space.dtype))
    if spec.success_key not in info:
        raise BMILError(f"model.env.success_key '{spec.success_key}' is not in {spec.id}'s step info (its keys: "
                        f"{', '.join(info) or 'none'}): name the key that reports success, or set model.env.success "
                        "to 'terminated' or 'distance'.")
