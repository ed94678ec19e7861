"""Expert demonstrations: generate, save atomically as a TensorDict memmap, load with validation.

On disk a dataset is a folder: tensordict's memmap files (one per key) plus ``bmil_demos.json``, a
small record of how it was made (env, expert, seed, counts, success rate, versions) and a SHA-256
of every tensor, so truncation or corruption is detected on load rather than trained on.

Rows are transitions (obs, action, next_obs, done, episode, step); ``done`` marks each episode's
last transition, whose ``next_obs`` is the true final state (the original code's demos stored the
auto-reset start state there, docs/original-code.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from tqdm import tqdm

from bmil.domains import Domain, get_domain
from bmil.errors import BMILError
from bmil.evaluation.rollout import episode_seed, run_episodes
from bmil.files import folder_name

FORMAT_VERSION = 1
META_FILE = "bmil_demos.json"
_VERSIONED = ["bmil", "torch", "tensordict", "mujoco", "gymnasium", "gymnasium-robotics"]


def default_demo_path(env: str, num: int, seed: int, stop_on_success: bool = False) -> Path:
    return Path("demos") / folder_name(f"{env}_n{num}_s{seed}{'_first_success' if stop_on_success else ''}")


def generate_demos(
    env: "str | Domain",
    num: int,
    seed: int = 0,
    out: str | Path | None = None,
    stop_on_success: bool = False,
    max_attempts: int | None = None,
    progress: bool = True,
) -> dict:
    """Roll the domain's expert out from the training start until ``num`` episodes succeed.

    Failed episodes are discarded (and counted in the success rate). With ``stop_on_success`` an
    episode ends at its first success, as the original's Fetch demos did; by default demos run the
    full horizon, so they also show holding the goal, which final-step success requires.
    Returns the metadata record written beside the data.
    """
    if num < 1:
        raise BMILError(f"--num must be at least 1, got {num}.")
    domain = get_domain(env) if isinstance(env, str) else env
    out = Path(out) if out is not None else default_demo_path(domain.name, num, seed, stop_on_success)
    check_writable(out)  # before generating, not after
    t0 = time.perf_counter()
    expert = domain.make_expert(seed)
    episodes, attempts = _successful_episodes(domain, expert, num, seed, stop_on_success,
                                              max_attempts or 5 * num + 10, progress)
    td = to_tensordict(episodes)
    meta = {
        "format": FORMAT_VERSION, "env": domain.name, "expert": type(expert).__name__, "seed": seed,
        "episodes": num, "attempts": attempts, "expert_success_rate": num / attempts,
        "stop_on_success": stop_on_success, "transitions": td.batch_size[0],
        "obs_dim": domain.obs_dim, "act_dim": domain.act_dim, "horizon": domain.horizon,
        "seconds": round(time.perf_counter() - t0, 3),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {name: _version(name) for name in _VERSIONED},
    }
    save_demos(td, meta, out)
    return {**meta, "path": str(out)}


def _successful_episodes(domain, expert, num: int, seed: int, stop_on_success: bool, max_attempts: int,
                         progress: bool) -> tuple[list[dict], int]:
    """Seeded expert episodes from the training start until ``num`` succeed; (episodes, attempts)."""
    envs, starts = [domain.make_env()], domain.training_starts(max_attempts, seed)
    episodes, attempts = [], 0
    bar = tqdm(total=num, desc=f"demos {domain.name}", unit="demo", disable=not progress, leave=False)
    while len(episodes) < num and attempts < max_attempts:
        rollout = run_episodes(envs, expert, starts[attempts: attempts + 1], [episode_seed(seed, attempts)],
                               domain.horizon, stop_on_success=stop_on_success, record=True)
        attempts += 1
        if rollout.success[0]:
            episodes.append(rollout.transitions[0])
            bar.update()
        bar.set_postfix(success=f"{len(episodes)}/{attempts}")
    bar.close()
    if len(episodes) < num:
        raise BMILError(
            f"The {domain.name} expert succeeded in only {len(episodes)} of {attempts} episodes; "
            f"{num} demos were asked for. Raise --max_attempts or check the environment."
        )
    return episodes, attempts


def to_tensordict(episodes: list[dict]) -> TensorDict:
    """Episodes (dicts of obs, action, next_obs arrays) as bmil's transitions."""
    lengths = [len(e["action"]) for e in episodes]
    cat = {k: torch.as_tensor(np.concatenate([e[k] for e in episodes])) for k in episodes[0]}
    episode = torch.repeat_interleave(torch.arange(len(episodes)), torch.tensor(lengths))
    step = torch.cat([torch.arange(n) for n in lengths])
    done = torch.zeros(len(step), dtype=torch.bool)
    done[torch.tensor(lengths).cumsum(0) - 1] = True
    return TensorDict(
        {
            "obs": cat["obs"].float(),
            "action": cat["action"].float(),
            "next_obs": cat["next_obs"].float(),
            "done": done,
            "episode": episode,
            "step": step,
        },
        batch_size=[len(step)],
    )


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _checksums(td: TensorDict) -> dict[str, str]:
    return {k: hashlib.sha256(td[k].contiguous().numpy().tobytes()).hexdigest() for k in td.keys()}


def check_writable(path: Path) -> None:
    """Refuse, before any work, a destination that is another folder with contents, or one whose
    parent cannot be written."""
    if path.exists() and not (path / META_FILE).is_file() and (not path.is_dir() or any(path.iterdir())):
        raise BMILError(f"'{path}' exists and is not a bmil demonstration dataset; refusing to overwrite it. "
                        "Choose another --out (or model.demos.path): a new or empty folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=path.parent).cleanup()
    except OSError as e:
        raise BMILError(f"Cannot write demonstrations beside '{path}' ({e.strerror}); choose another --out.") from None


def _remove_stale_parts(path: Path) -> None:
    """Clear what a killed writer of ``path`` left beside it (its temporary or replaced folder,
    named with its process id), once that process is gone: a writer killed between its two renames
    left no dataset at ``path``, and the replaced one it set aside is put back."""
    for part in sorted(path.parent.glob(f".{path.name}.*-*")):
        kind, _, rest = part.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.replace(part, path)
        else:
            shutil.rmtree(part, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def empty_or_missing(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def save_demos(td: TensorDict, meta: dict, path: str | Path) -> None:
    """Write ``td`` and ``meta`` to the folder ``path`` atomically.

    The data is written to a temporary folder beside ``path`` and renamed into place, so a crash
    leaves either the old dataset or the new one, never a half-written one. An existing folder is
    replaced only if it is itself a bmil demo dataset.
    """
    path = Path(path)
    check_writable(path)
    _remove_stale_parts(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        td.memmap(prefix=tmp)
        record = {**meta, "checksums": _checksums(td)}
        with open(tmp / META_FILE, "w") as f:
            json.dump(record, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if path.exists() and not any(path.iterdir()):  # an empty folder: nothing to keep
            path.rmdir()
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_demos(path: str | Path, env: str | None = None) -> tuple[TensorDict, dict]:
    """Load and validate a demo dataset; ``env`` (if given) must match the one it was made for.

    Returns the transitions (in memory) and the metadata record. Every problem (missing, truncated,
    corrupt, wrong env or dimension, non-finite values) raises a ``BMILError`` saying how to fix it.
    """
    path = Path(path)
    if path.parent.is_dir():
        _remove_stale_parts(path)
    target = path if empty_or_missing(path) or (path / META_FILE).is_file() else "<a new folder>"
    regenerate = f"Regenerate it with: bmil demos --env {env or '<env>'} --num <N> --out {target}"
    if not path.exists():
        raise BMILError(f"Demonstration dataset '{path}' not found. {regenerate}")
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise BMILError(f"'{path}' is not a bmil demonstration dataset (no {META_FILE}). {regenerate}")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BMILError(f"The metadata {meta_file} is corrupt ({e}). {regenerate}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise BMILError(
            f"'{path}' has demo format {meta.get('format')}, this bmil reads format "
            f"{FORMAT_VERSION}. {regenerate}"
        )
    if env is not None and meta.get("env") != env:
        raise BMILError(
            f"'{path}' holds demonstrations for env '{meta.get('env')}', but env '{env}' was asked "
            f"for. Point to a {env} dataset, or generate one: "
            f"bmil demos --env {env} --num <N> --out <new path>"
        )
    domain = get_domain(meta["env"])
    td = _read_tensors(path, meta, domain, regenerate)
    _validate(td, meta, path, regenerate)
    return td, meta


def _read_tensors(path: Path, meta: dict, domain, regenerate: str) -> TensorDict:
    """The six tensors as raw arrays of the dtype and shape the metadata and the domain imply.

    Nothing in the folder is unpickled (tensordict's own loader would unpickle non-tensor entries,
    running any code they carry), and a file that is not one of the dataset's is refused.
    """
    n = meta.get("transitions")
    if not isinstance(n, int) or n < 1:
        raise BMILError(f"The metadata {path / META_FILE} has no valid transition count. {regenerate}")
    layout = {"obs": ((n, domain.obs_dim), np.float32), "action": ((n, domain.act_dim), np.float32),
              "next_obs": ((n, domain.obs_dim), np.float32), "done": ((n,), np.bool_),
              "episode": ((n,), np.int64), "step": ((n,), np.int64)}
    expected = {f"{key}.memmap" for key in layout} | {"meta.json", META_FILE}
    unexpected = sorted(p.name for p in path.iterdir() if p.name not in expected)
    if unexpected:
        raise BMILError(f"'{path}' holds {', '.join(unexpected)}, which no bmil dataset has (it holds only "
                        f"{', '.join(sorted(expected))}); it is not loaded. {regenerate}")
    tensors = {}
    for key, (shape, dtype) in layout.items():
        file = path / f"{key}.memmap"
        if not file.is_file():
            raise BMILError(f"'{path}' has no '{key}' tensor ({file.name}). {regenerate}")
        raw = np.fromfile(file, dtype=dtype)
        if raw.size != int(np.prod(shape)):
            found = (n, raw.size // n) if len(shape) == 2 and raw.size % n == 0 else f"{raw.size} values of"
            raise BMILError(f"'{path}': '{key}' is {found} {np.dtype(dtype).name}, expected {shape} for env "
                            f"'{domain.name}' (another env's, truncated or corrupt). {regenerate}")
        tensors[key] = torch.from_numpy(raw.reshape(shape))
    return TensorDict(tensors, batch_size=[n])


def _validate(td, meta, path, regenerate) -> None:
    if _checksums(td) != meta.get("checksums", {}):
        raise BMILError(f"'{path}' fails its checksum (truncated or modified). {regenerate}")
    for key in ("obs", "action", "next_obs"):
        if not torch.isfinite(td[key]).all():
            raise BMILError(f"'{path}': '{key}' contains NaN or inf values. {regenerate}")
    if int(td["done"].sum()) != meta.get("episodes"):
        raise BMILError(f"'{path}': episode count disagrees with its metadata. {regenerate}")
