"""Demonstrations in the field's formats, read into bmil's transitions (docs/your-own-task.md).

``read_demos(source, domain, num)`` takes, by what ``source`` is:

- a bmil dataset folder (``bmil demos``; ``bmil_demos.json`` inside);
- ``minari:<dataset id>`` (under ``MINARI_DATASETS_PATH``, default ~/.minari/datasets) or a Minari
  dataset folder (``data/metadata.json`` inside); local only, nothing is downloaded;
- a robomimic-layout HDF5 file (``data/demo_<i>/obs``, ``actions``, optional ``next_obs``; ``obs``
  a dataset, or a group read with ``model.env.obs_keys``);
- a ``.npz`` file: ``obs`` and ``actions`` plus ``episode`` (an id per row) or ``episode_ends``
  (the index after each episode's last row), optional ``next_obs``.

Without ``next_obs`` an episode's transitions are consecutive rows, so its last row's action is
dropped (a Minari episode stores one observation more than actions: none is lost). Every episode is
checked against the domain: dimensions, finiteness, at least one transition; the first ``num``
episodes are used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from tensordict import TensorDict

from bmil.demos import META_FILE, load_demos, to_tensordict
from bmil.errors import BMILError

MINARI_PREFIX = "minari:"


def minari_root() -> Path:
    """Where Minari keeps its datasets on this machine (``MINARI_DATASETS_PATH``, else Minari's default)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def read_demos(source: str | Path, domain, num: int) -> tuple[TensorDict, dict]:
    """The first ``num`` episodes of ``source`` as transitions, and a record of where they came from."""
    text = str(source)
    path = Path(text)
    if text.startswith(MINARI_PREFIX) or (path / "data" / "metadata.json").is_file():
        episodes, fmt = _minari_episodes(text, domain), "minari"
    elif (path / META_FILE).is_file():
        td, meta = load_demos(path, env=domain.name)
        if meta["episodes"] != num:
            raise BMILError(f"{path} holds {meta['episodes']} demos but demos.num is {num}. Set model.demos.num "
                            f"to {meta['episodes']} or point model.demos.path to another dataset.")
        return td, {**meta, "format": "bmil"}
    elif not path.exists():
        raise BMILError(f"Demonstrations '{text}' not found. Give an existing bmil folder, Minari dataset "
                        f"('minari:<id>' or its folder), .hdf5 or .npz file; or generate bmil's own with: "
                        f"bmil demos --env {domain.name} --num {num} --out {text}")
    elif path.suffix in (".hdf5", ".h5"):
        episodes, fmt = _robomimic_episodes(path, domain), "robomimic-hdf5"
    elif path.suffix == ".npz":
        episodes, fmt = _npz_episodes(path), "npz"
    else:
        raise BMILError(f"'{text}' is no demonstration format bmil reads: a bmil folder, a Minari dataset, "
                        "a robomimic-layout .hdf5/.h5 or an .npz file (docs/your-own-task.md).")
    if len(episodes) < num:
        raise BMILError(f"'{text}' holds {len(episodes)} episodes but demos.num is {num}: lower model.demos.num.")
    episodes = episodes[:num]
    for i, (obs, action, next_obs) in enumerate(episodes):
        _check_episode(text, i, obs, action, next_obs, domain)
    if domain.action_scale.declared:  # the policy's [-1, 1] from the env's action bounds
        episodes = [(o, _unit_actions(text, i, a, domain), n) for i, (o, a, n) in enumerate(episodes)]
    td = to_tensordict([{"obs": o, "action": a, "next_obs": n} for o, a, n in episodes])
    return td, {"format": fmt, "source": text, "episodes": num, "transitions": td.batch_size[0]}


def _check_episode(source: str, i: int, obs, action, next_obs, domain) -> None:
    where = f"'{source}', episode {i}"
    if len(action) < 1:
        raise BMILError(f"{where} has no transition (an episode needs at least two observations).")
    for key, value, dim in (("observations", obs, domain.obs_dim), ("actions", action, domain.act_dim),
                            ("next observations", next_obs, domain.obs_dim)):
        if value.ndim != 2 or value.shape[1] != dim or len(value) != len(action):
            raise BMILError(f"{where}: {key} have shape {tuple(value.shape)}, but {domain.name} needs "
                            f"({len(action)}, {dim}) (observation {domain.obs_dim}, action {domain.act_dim}). "
                            "Check model.env (its obs_keys) against how the demonstrations were recorded.")
        if not np.isfinite(value).all():
            raise BMILError(f"{where}: {key} contain NaN or inf; clean the dataset.")


def _unit_actions(source: str, i: int, actions: np.ndarray, domain) -> np.ndarray:
    unit = domain.action_scale.to_unit(actions)
    if np.abs(unit).max() > 1.0 + 1e-5:
        worst = np.unravel_index(np.abs(unit).argmax(), unit.shape)
        raise BMILError(f"'{source}', episode {i}: action {actions[worst]:.4g} (step {worst[0]}, dimension "
                        f"{worst[1]}) lies outside {domain.name}'s action bounds [{domain.action_scale.low[worst[1]]:.4g}, "
                        f"{domain.action_scale.high[worst[1]]:.4g}].")
    return unit


def _numeric(value, what: str) -> np.ndarray:
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise BMILError(f"{what} is of type {array.dtype}, not numbers.")
    array = array.astype(np.float64)
    return array.reshape(len(array), -1) if array.ndim >= 1 else array


def _split(obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray | None):
    """(obs, action, next_obs) of one episode: given next_obs, or consecutive observations."""
    if next_obs is not None:
        return obs, actions, next_obs
    n = min(len(actions), len(obs) - 1)
    return obs[:n], actions[:n], obs[1: n + 1]


def _npz_episodes(path: Path) -> list:
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise BMILError(f"'{path}' is not a readable .npz file ({e}).") from None
    missing = [k for k in ("obs", "actions") if k not in data]
    if missing:
        raise BMILError(f"'{path}' has no {' or '.join(missing)} array (it has: {', '.join(data) or 'nothing'}); "
                        "an .npz needs obs, actions, and episode or episode_ends.")
    obs, actions = _numeric(data["obs"], f"'{path}': obs"), _numeric(data["actions"], f"'{path}': actions")
    next_obs = _numeric(data["next_obs"], f"'{path}': next_obs") if "next_obs" in data else None
    if "episode" in data:
        ids = np.asarray(data["episode"])
        if len(ids) != len(obs):
            raise BMILError(f"'{path}': episode has {len(ids)} ids for {len(obs)} observations; one per row.")
        change = np.flatnonzero(np.diff(ids) != 0) + 1
        if len(np.unique(ids)) != len(change) + 1:
            raise BMILError(f"'{path}': the rows of an episode must be contiguous (sorted by episode).")
        ends = np.append(change, len(ids))
    elif "episode_ends" in data:
        ends = np.asarray(data["episode_ends"], dtype=np.int64)
        if len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0 or ends[-1] != len(obs):
            raise BMILError(f"'{path}': episode_ends must increase and end at the row count ({len(obs)}).")
    else:
        raise BMILError(f"'{path}' has no episode boundaries: add 'episode' (an id per row) or 'episode_ends' "
                        "(the index after each episode's last row).")
    if len(actions) != len(obs) or (next_obs is not None and len(next_obs) != len(obs)):
        raise BMILError(f"'{path}': obs has {len(obs)} rows, actions {len(actions)}"
                        f"{'' if next_obs is None else f', next_obs {len(next_obs)}'}: one row per step.")
    starts = np.concatenate([[0], ends[:-1]])
    return [_split(obs[a:b], actions[a:b], None if next_obs is None else next_obs[a:b])
            for a, b in zip(starts, ends)]


def _robomimic_episodes(path: Path, domain) -> list:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BMILError(f"'{path}' is not a readable HDF5 file ({e}).") from None
    with f:
        names = sorted((k for k in f.get("data", {}) if re.fullmatch(r"demo_\d+", k)), key=lambda k: int(k[5:]))
        if not names:
            raise BMILError(f"'{path}' has no data/demo_<i> groups (robomimic's layout); it has: "
                            f"{', '.join(f.keys()) or 'nothing'}.")
        keys = list(domain.obs_keys)
        episodes = []
        for name in names:
            demo = f["data"][name]
            if "obs" not in demo or "actions" not in demo:
                raise BMILError(f"'{path}': data/{name} needs 'obs' and 'actions' (it has {', '.join(demo)}).")
            obs = _h5_obs(demo["obs"], keys, f"'{path}': data/{name}/obs")
            next_obs = _h5_obs(demo["next_obs"], keys, f"'{path}': data/{name}/next_obs") if "next_obs" in demo else None
            episodes.append(_split(obs, _numeric(demo["actions"][()], f"'{path}': data/{name}/actions"), next_obs))
    return episodes


def _h5_obs(node, keys: list[str], what: str) -> np.ndarray:
    import h5py

    if isinstance(node, h5py.Dataset):
        return _numeric(node[()], what)
    if not keys:
        raise BMILError(f"{what} is a group ({', '.join(node)}): choose the keys the policy sees with "
                        "model.env.obs_keys, in the environment's order.")
    missing = [k for k in keys if k not in node]
    if missing:
        raise BMILError(f"{what} has no {', '.join(missing)} (it has {', '.join(node)}); check model.env.obs_keys.")
    return np.concatenate([_numeric(node[k][()], f"{what}/{k}") for k in keys], axis=1)


def _minari_episodes(source: str, domain) -> list:
    import minari
    from minari.dataset.minari_dataset import MinariDataset

    keys = list(domain.obs_keys)
    try:
        if source.startswith(MINARI_PREFIX):
            dataset = minari.load_dataset(source[len(MINARI_PREFIX):], download=False)
        else:
            dataset = MinariDataset(Path(source) / "data")
    except (FileNotFoundError, ValueError) as e:
        root = minari_root()
        raise BMILError(f"Minari dataset '{source}' not found locally ({e}). bmil downloads nothing: put it under "
                        f"MINARI_DATASETS_PATH ({root}) or give its folder.") from None
    episodes = []
    for episode in dataset.iterate_episodes():
        obs = episode.observations
        if isinstance(obs, dict):
            if not keys:
                raise BMILError(f"Minari dataset '{source}' observes a dict ({', '.join(obs)}): choose the keys "
                                "the policy sees with model.env.obs_keys.")
            missing = [k for k in keys if k not in obs]
            if missing:
                raise BMILError(f"Minari dataset '{source}' has no observation key {', '.join(missing)} "
                                f"(it has {', '.join(obs)}); check model.env.obs_keys.")
            obs = np.concatenate([_numeric(obs[k], f"'{source}': {k}") for k in keys], axis=1)
        else:
            obs = _numeric(obs, f"'{source}': observations")
        episodes.append(_split(obs, _numeric(episode.actions, f"'{source}': actions"), None))
    return episodes


def write_minari(td: TensorDict, dataset_id: str, domain, description: str = "") -> Path:
    """Write bmil transitions as the Minari dataset ``dataset_id`` (under MINARI_DATASETS_PATH).

    bmil's demonstrations have no rewards: Minari's reward field is zeros. An episode ends
    terminated where the domain ends episodes at success, else truncated (the horizon)."""
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    warnings.filterwarnings("ignore", module="minari")  # its reminders to fill in author, permalink, ...
    buffers = []
    for i in range(int(td["episode"].max()) + 1):
        rows = td[td["episode"] == i]
        n = len(rows)
        obs = np.concatenate([rows["obs"].numpy(), rows["next_obs"][-1:].numpy()])
        ends = np.zeros(n, dtype=bool)
        ends[-1] = True
        terminal = bool(domain.terminates_on_success)
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=rows["action"].numpy(),
                                     rewards=np.zeros(n), terminations=ends & terminal, truncations=ends & (not terminal)))
    box = lambda dim: gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)  # noqa: E731
    try:
        dataset = minari.create_dataset_from_buffers(
            dataset_id, buffers, action_space=gym.spaces.Box(-1.0, 1.0, (domain.act_dim,), np.float32),
            observation_space=box(domain.obs_dim), algorithm_name="bmil scripted expert",
            description=description or f"bmil demonstrations of {domain.name}")
    except ValueError as e:
        raise BMILError(f"Minari cannot write '{dataset_id}' ({e}); choose another id (namespace/name-v0).") from None
    return Path(dataset.spec.data_path).parent
