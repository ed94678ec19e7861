"""How a configured gymnasium environment (``bmil.domains.from_gym``) starts an episode: its own
seeded reset with the start's options, then optional noise on MuJoCo's state or the user's own
``perturb`` hook; and which of those settings change nothing (an env whose ``reset`` ignores its
options, noise on coordinates the observation does not show, a hook that moves nothing).

A start row is ``[kind flag, reset seed, choice, noise..., first observation...]``; the flag (0
training, 1 robustness) tells a worker's env which settings drew it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import mujoco
import numpy as np

from bmil.errors import BMILError
from bmil.loading import import_object


@dataclass
class StartSettings:
    """How episodes start: the environment's own seeded reset, then optional perturbations.

    Args:
        options: ``reset(options=...)`` of every start (e.g. PointMaze's {reset_cell: [3, 1]}).
        choices: Options of which each start uses one, drawn uniformly, over ``options``.
        qpos_noise: {qpos index: scale}: uniform U(-scale, scale) added after reset (MuJoCo envs
            whose unwrapped env has ``set_state`` and ``_get_obs()``).
        qvel_noise: {qvel index: scale}, likewise.
        perturb: Import path "package.module:function" of ``function(env, rng)``, called after the
            reset (``env`` the unwrapped env, ``rng`` a seeded numpy Generator); it moves the env to
            the start and returns the new observation.
    """

    options: dict[str, Any] = field(default_factory=dict)
    choices: list[dict[str, Any]] = field(default_factory=list)
    qpos_noise: dict[int, float] = field(default_factory=dict)
    qvel_noise: dict[int, float] = field(default_factory=dict)
    perturb: str = ""


def kind_of(row) -> str:
    return "robustness" if row[0] > 0.5 else "training"


def start_from(env, settings: StartSettings, kind: str, row) -> tuple[Any, dict]:
    """Reset ``env`` (the wrapped gymnasium env) to the start ``row`` drew with ``settings``."""
    seed, choice = int(row[1]), int(row[2])
    options = {**settings.options, **(settings.choices[choice] if settings.choices else {})}
    options = {k: np.asarray(v) if isinstance(v, list) else v for k, v in options.items()}
    obs, info = env.reset(seed=seed, options=options or None)
    noise = np.asarray(row[3: 3 + len(settings.qpos_noise) + len(settings.qvel_noise)], dtype=np.float64)
    if len(noise):
        obs = _add_noise(env.unwrapped, settings, noise)
    if settings.perturb:
        obs = import_hook(settings.perturb, f"model.env.{kind}.perturb")(env.unwrapped, np.random.default_rng(seed))
    return obs, info


def settings_without_effect(env, settings: StartSettings, kind: str, rows: np.ndarray,
                            observe: Callable[[Any], np.ndarray]) -> list[str]:
    """The settings of ``kind`` that change nothing in the first observation (``observe``) of any of
    ``rows``, each named with what it was compared against; [] where a start does not even repeat
    (a reset that ignores its seed: nothing can be told apart)."""
    def first(settings_, row) -> np.ndarray:
        return observe(start_from(env, settings_, kind, row)[0])

    def same(a: StartSettings, b: StartSettings, rows_a, rows_b=None) -> bool:
        rows_b = rows_a if rows_b is None else rows_b
        return all(np.array_equal(first(a, ra), first(b, rb)) for ra, rb in zip(rows_a, rows_b))

    if not same(settings, settings, rows):
        return []
    name, found = f"model.env.{kind}", []
    if settings.options and same(settings, replace(settings, options={}), rows):
        found.append(f"{name}.options (the same as reset without them: the env's reset ignores its options)")
    if len(settings.choices) > 1:
        row = rows[0]
        others = [np.concatenate([row[:2], [c], row[3:]]) for c in range(1, len(settings.choices))]
        if same(settings, settings, [np.concatenate([row[:2], [0], row[3:]])] * len(others), others):
            found.append(f"{name}.choices (every choice gives the same start: the env's reset ignores its options)")
    k = len(settings.qpos_noise)
    for noise, columns in (("qpos_noise", slice(3, 3 + k)), ("qvel_noise", slice(3 + k, 3 + k + len(settings.qvel_noise)))):
        if getattr(settings, noise):
            quiet = rows.copy()
            quiet[:, columns] = 0.0
            if same(settings, settings, rows, quiet):
                found.append(f"{name}.{noise} (the same first observation as without the noise)")
    if settings.perturb and same(settings, replace(settings, perturb=""), rows):
        found.append(f"{name}.perturb (its '{settings.perturb}' leaves the first observation as the reset gave it)")
    return found


def check_noise_support(env, env_id: str, settings: StartSettings, kind: str) -> None:
    ok = hasattr(env, "set_state") and hasattr(env, "data")
    try:
        ok = ok and inspect.signature(env._get_obs).parameters == {}
    except (AttributeError, ValueError):
        ok = False
    if not ok:
        raise BMILError(f"{env_id}: qpos_noise/qvel_noise need a MuJoCo env with set_state and _get_obs() "
                        "(gymnasium's MuJoCo envs); use model.env.<training|robustness>.perturb (your own "
                        "function) or the env's reset options instead.")
    for name, size in (("qpos_noise", env.data.qpos.size), ("qvel_noise", env.data.qvel.size)):
        bad = [i for i in getattr(settings, name) if not 0 <= i < size]
        if bad:
            raise BMILError(f"model.env.{kind}.{name}: indices {bad} outside {env_id}'s {name[:4]} (0..{size - 1}).")


def _add_noise(env, settings: StartSettings, noise: np.ndarray):
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    k = len(settings.qpos_noise)
    for (i, _), value in zip(settings.qpos_noise.items(), noise[:k]):
        qpos[i] += value
    for (i, _), value in zip(settings.qvel_noise.items(), noise[k:]):
        qvel[i] += value
    env.set_state(qpos, qvel)
    mujoco.mj_forward(env.model, env.data)
    return env._get_obs()


def import_hook(path: str, setting: str):
    try:
        return import_object(path)
    except ImportError as e:
        raise BMILError(f"{setting}: cannot import '{path}' ({e}); give 'package.module:function'.") from None
