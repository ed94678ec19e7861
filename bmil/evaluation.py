"""Robustness and training-success evaluation of any batch policy.

A *policy* is any callable mapping a float32 observation tensor (B, obs_dim) to an action tensor
(B, act_dim); if it has ``reset(num_envs, seed)`` (the scripted experts do) that is called before
each batch of episodes. Start states come as an explicit, seeded list of rows, one episode each:
exactly ``len(starts)`` episodes are run and counted, whatever ends early.

Speed: the start list is cut into fixed batches of ``batch_size`` rows; batches are dealt to worker
processes that each hold a copy of the policy and step their own envs, with one batched policy call
per step. No per-step inter-process traffic, so it scales with cores (gymnasium's AsyncVectorEnv
pays an IPC round-trip per step). Batches and per-episode seeds do not depend on the number of
workers, so results are identical for any ``workers``.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import hashlib
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
import torch
from tqdm import tqdm

from bmil.errors import BMILError

if TYPE_CHECKING:
    from bmil.domains import Domain

Policy = Callable[[torch.Tensor], torch.Tensor]
SuccessMode = Literal["final", "any"]
StartsKind = Literal["training", "robustness"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def stratified_interval(successes: np.ndarray, counts: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """95% interval for the unweighted mean of per-group success rates (the mazes' mean over cells).

    Each group's rate gets the Agresti-Coull adjustment (z^2/2 pseudo-successes and failures, so a
    group at 0% or 100% still carries variance); the mean's variance is the sum of the groups'
    variances over K^2, as for a stratified sample. Groups without episodes are left out.
    """
    successes, counts = np.asarray(successes, float), np.asarray(counts, float)
    keep = counts > 0
    if not keep.any():
        return 0.0, 1.0
    s, n = successes[keep], counts[keep]
    mean = float((s / n).mean())
    n_adj = n + z * z
    p_adj = (s + z * z / 2) / n_adj
    half = z * math.sqrt(float((p_adj * (1 - p_adj) / n_adj).sum())) / len(n)
    return max(0.0, mean - half), min(1.0, mean + half)


@dataclass
class EvalResult:
    """Per-start outcomes of an evaluation; ``success[i]`` is the episode started at ``starts[i]``.

    With ``groups`` (the maze cell of every start) the rate is the unweighted mean of the per-group
    rates, as the paper reports mazes, with a stratified 95% interval.
    """

    domain: str
    starts: np.ndarray  # (N, start_dim)
    success: np.ndarray  # (N,) bool
    steps: np.ndarray  # (N,) int, steps each episode ran
    success_mode: str = "final"
    groups: np.ndarray | None = None  # (N,) int group id of every start, or None
    num_groups: int = 0
    flags: dict = field(default_factory=dict)  # name -> (N,) bool: the domain's episode flags at the end

    @classmethod
    def of(cls, domain: "Domain", starts, success, steps, success_mode: str = "final",
           flags: dict | None = None) -> "EvalResult":
        """A result grouped the way ``domain`` groups its starts (per maze cell, or not at all)."""
        return cls(domain.name, starts, success, steps, success_mode, domain.start_groups(starts),
                   domain.num_groups, flags or {})

    @property
    def episodes(self) -> int:
        return len(self.success)

    def group_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(successes, episodes) of every group id 0..num_groups-1."""
        k = self.num_groups
        return (np.bincount(self.groups, weights=self.success, minlength=k).astype(np.int64),
                np.bincount(self.groups, minlength=k))

    def group_rates(self) -> np.ndarray:
        """Success rate of every group (NaN where a group has no episodes)."""
        s, n = self.group_counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    @property
    def rate(self) -> float:
        if not self.episodes:
            return 0.0
        if self.groups is not None:
            return float(np.nanmean(self.group_rates()))
        return float(self.success.mean())

    @property
    def ci(self) -> tuple[float, float]:
        if self.groups is not None:
            return stratified_interval(*self.group_counts())
        return wilson_interval(int(self.success.sum()), self.episodes)

    def summary(self) -> str:
        lo, hi = self.ci
        over = f"over {self.episodes} episodes"
        if self.groups is not None and self.episodes:
            n = self.group_counts()[1]
            used = n[n > 0]
            per = f"{used.min()}" if used.min() == used.max() else f"{used.min()}-{used.max()}"
            over = f"mean over {len(used)} cells ({per} episodes each, {self.episodes} in all)"
        flags = "".join(f"; {name} at the end: {int(v.sum())} ({100 * v.mean():.1f}%)" for name, v in self.flags.items())
        return (
            f"{self.domain}: success {100 * self.rate:.1f}% "
            f"(95% CI {100 * lo:.2f}-{100 * hi:.2f}%) {over} "
            f"[judged at the {'final step' if self.success_mode == 'final' else 'best step'}]{flags}"
        )

    def to_dict(self) -> dict:
        lo, hi = self.ci
        record = {
            "domain": self.domain,
            "episodes": self.episodes,
            "successes": int(self.success.sum()),
            "success_rate": self.rate,
            "ci95": [lo, hi],
            "success_mode": self.success_mode,
        }
        if self.groups is not None:
            s, n = self.group_counts()
            record.update(group_successes=s.tolist(), group_episodes=n.tolist())
        if self.flags:
            record["flags"] = {name: int(v.sum()) for name, v in self.flags.items()}
        return record

    def outcomes(self) -> dict:
        """Every start and its outcome, as JSON lists."""
        return {"starts": self.starts.tolist(), "success": self.success.tolist()}

    def record(self) -> dict:
        """``to_dict`` plus every start and its outcome: what an evaluation's JSON file holds."""
        return {**self.to_dict(), **self.outcomes()}

    def metrics(self, name: str) -> dict[str, float]:
        """The logged scalars: ``name`` (the rate) and its 95% interval as ``name``_ci_low/high."""
        lo, hi = self.ci
        return {name: self.rate, f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, cgroups' cpusets), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of an evaluation seeded ``seed`` (env reset noise)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def run_episodes(
    envs: list,
    policy: Policy,
    starts: np.ndarray,
    seeds: list[int],
    horizon: int,
    success_mode: SuccessMode = "final",
    stop_on_success: bool = False,
    record: bool = False,
    flags: dict | None = None,
):
    """Run one episode per start in lockstep over ``envs`` (at least ``len(starts)`` of them).

    Returns ``(success, steps, transitions)``; ``transitions`` (only with ``record``) is a list per
    episode of dicts of arrays ``obs, action, next_obs``. ``stop_on_success`` ends an episode at its
    first success (envs that terminate on success end there anyway). ``flags``: a dict whose keys
    are info keys; each gets the (n,) bool array of that key's value at every episode's end.
    """
    n = len(starts)
    if success_mode not in ("final", "any"):
        raise BMILError(f"success must be 'final' or 'any', got '{success_mode}'.")
    obs, success_now = [], np.zeros(n, dtype=bool)
    flags = {} if flags is None else flags
    for key in flags:
        flags[key] = np.zeros(n, dtype=bool)
    for i in range(n):
        o, info = envs[i].reset(seed=seeds[i], options={"start": starts[i]})
        obs.append(o)
        success_now[i] = bool(info.get("is_success", False))
        for key in flags:
            flags[key][i] = bool(info.get(key, False))
    obs = np.stack(obs)
    ever = success_now.copy()
    active = ~(success_now & stop_on_success)  # started at the goal: over before its first step
    steps = np.zeros(n, dtype=np.int64)
    traces = [{"obs": [], "action": [], "next_obs": []} for _ in range(n)] if record else None
    if hasattr(policy, "reset"):
        policy.reset(n, seeds[0])
    for _ in range(horizon):
        with torch.inference_mode():
            actions = policy(torch.as_tensor(obs, dtype=torch.float32))
        actions = _check_actions(actions, n)
        for i in np.flatnonzero(active):
            o, _, terminated, truncated, info = envs[i].step(actions[i])
            success_now[i] = bool(info.get("is_success", False))
            for key in flags:
                flags[key][i] = bool(info.get(key, False))
            ever[i] |= success_now[i]
            steps[i] += 1
            if record:
                for key, value in (("obs", obs[i].copy()), ("action", actions[i]), ("next_obs", o)):
                    traces[i][key].append(value)
            obs[i] = o
            if terminated or (stop_on_success and success_now[i]):
                active[i] = False
        if not active.any():
            break
    success = success_now if success_mode == "final" else ever
    if record:
        traces = [{k: np.stack(v) for k, v in t.items()} for t in traces]
    return success, steps, traces


def _check_actions(actions, n: int) -> np.ndarray:
    actions = torch.as_tensor(actions).detach().cpu().numpy()
    if actions.ndim != 2 or actions.shape[0] != n:
        raise BMILError(f"The policy returned actions of shape {actions.shape}; expected ({n}, act_dim).")
    if not np.isfinite(actions).all():
        raise BMILError("The policy returned non-finite actions (NaN or inf); check its weights.")
    return actions


# ---- worker side ------------------------------------------------------------------------------
_WORKER_ENVS: dict[str, list] = {}


def _envs_for(domain: "Domain", n: int) -> list:
    envs = _WORKER_ENVS.setdefault(domain.key, [])
    while len(envs) < n:
        envs.append(domain.make_env())
    return envs


def _worker_init() -> None:
    # Each worker steps its own envs and runs its own small policy: one thread each, or the
    # processes fight over the same cores.
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group; the main process alone decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM back while workers start: a handler that raises between launching a
    worker and sending it its task leaves the worker to die of an EOFError traceback. This process
    defers both signals (blocking alone would not do: another thread may take them). SIGINT is also
    blocked, as a process starts with its parent's blocked signals: a worker still importing
    (before ``_worker_init`` ignores SIGINT) is spared a Ctrl-C to the group, while SIGTERM still
    ends it at once, silently. Held signals are delivered when this ends."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    # None: a handler not set from Python, which could not be put back
    handlers = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None}
    for signum in handlers:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


def _workers_load_glfw_directly() -> None:
    """A spawned worker imports glfw (through gymnasium's MuJoCo renderer), which otherwise probes
    each candidate library in a Python subprocess; a worker ended during that probe leaves the probe
    to print a BrokenPipeError traceback. Workers inherit the environment, so naming the library this
    process loaded makes them load it at once."""
    library = getattr(sys.modules.get("glfw.library"), "glfw", None)
    if library is not None:
        os.environ.setdefault("PYGLFW_LIBRARY", library._name)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the main process dies, even by SIGKILL (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_batches(domain, policy, starts, batch_ids, *, batch_size, seed, success_mode, offset=0):
    """Run the given batches of the start list, of which ``starts`` holds the rows from ``offset`` on;
    returns (batch_id, success, steps, flags) per batch."""
    envs = _envs_for(domain, batch_size)
    out = []
    for b in batch_ids:
        lo = b * batch_size
        rows = starts[lo - offset : lo - offset + batch_size]
        seeds = [episode_seed(seed, lo + i) for i in range(len(rows))]
        flags = dict.fromkeys(domain.episode_flags)
        success, steps, _ = run_episodes(envs, policy, rows, seeds, domain.horizon, success_mode,
                                         stop_on_success=domain.terminates_on_success, flags=flags)
        out.append((b, success, steps, flags))
    return out


class _Journal:
    """An evaluation's finished batches, one JSON line each after a first line holding its key, so
    that a long evaluation (an ant VINS run's final test scores 500 candidate actions at every step
    of 1,000 episodes) stopped part-way resumes where it was. A line is appended and flushed to
    disk as its batch finishes; a line cut short by a kill is ignored. A journal with another key
    (other weights, starts or settings) is started afresh."""

    def __init__(self, path: str | Path, key: dict):
        self.path, self.key = Path(path), key

    def load(self) -> list:
        """The batches kept (as ``_run_batches`` returns them), starting the file afresh if it is
        missing, damaged or another evaluation's."""
        lines = self.path.read_text().split("\n") if self.path.is_file() else []
        kept = []
        try:
            if json.loads(lines[0]) == {"key": self.key}:
                for line in lines[1:]:
                    row = json.loads(line)
                    kept.append((row["batch"], np.array(row["success"], bool), np.array(row["steps"], np.int64),
                                 {k: np.array(v, bool) for k, v in row["flags"].items()}))
        except (IndexError, ValueError, KeyError, TypeError):
            pass  # no journal, another one, or a last line cut short: keep what parsed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"key": self.key}) + "\n")
        os.replace(tmp, self.path)
        self.append(kept)
        return kept

    def append(self, batches: list) -> None:
        with open(self.path, "a") as f:
            for b, success, steps, flags in batches:
                f.write(json.dumps({"batch": int(b), "success": success.tolist(), "steps": steps.tolist(),
                                    "flags": {k: v.tolist() for k, v in flags.items()}}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _in_ray_task(run, ids: list[int]) -> list:
    """A Ray task's batches, as a worker process runs them (one thread)."""
    torch.set_num_threads(1)
    return run(ids)


def _ray_tasks(run, tasks: list[list[int]]) -> list:
    """The batches dealt to Ray tasks of one CPU each; the evaluation (domain, policy, starts) is sent
    to the cluster once. Futures in the order of ``tasks``."""
    import ray

    shared = ray.put(run)
    remote = ray.remote(num_cpus=1, max_retries=3)(_in_ray_task)
    return [remote.remote(shared, ids).future() for ids in tasks]


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """Evaluation worker processes. Spawned, not forked: forking a process that already runs
    torch/OpenMP threads can hang."""
    _workers_load_glfw_directly()
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)


def _build_and_reset(domain: "Domain") -> None:
    """In a worker: build the environment and reset it to a training start and a robustness start."""
    env = domain.make_env()
    try:
        for starts in (domain.training_starts(1, 0), domain.robustness_starts(1, 0)):
            env.reset(seed=0, options={"start": starts[0]})
    finally:
        env.close()


def check_worker(domain: "Domain") -> None:
    """One fresh worker process, started as the evaluation's are, builds ``domain``'s environment: an
    environment only the main process can build (registered by code run there alone) is refused at
    the start, not at the first evaluation."""
    with _worker_pool(1) as pool:
        with _signals_held():
            future = pool.submit(_build_and_reset, domain)
        try:
            future.result()
        except BMILError as e:
            raise BMILError(f"An evaluation worker cannot build {domain.name}: {e}") from None
        except Exception as e:  # what the environment's own code raised in the worker
            raise BMILError(
                f"An evaluation worker (a new Python process) cannot build {domain.name}: {type(e).__name__}: {e}. "
                "Make the environment importable there: give model.env.id as 'package.module:EnvId', or a "
                "domain factory's import path, instead of registering it in the main process; or evaluate in "
                "the main process with --training_success.workers 0 --robustness.workers 0 --validation.workers 0."
            ) from None


# ---- user side --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """This process's share of an evaluation split over ``world`` processes (DDP ranks);
    ``gather(success, steps, sizes)`` returns every rank's outcomes in rank order."""

    rank: int
    world: int
    gather: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Evaluator:
    """Runs evaluations over a persistent pool of worker processes (``workers=0``: in-process).

    Use as a context manager, or call ``close()``; the pool starts on the first evaluation.
    """

    def __init__(self, domain: "Domain", workers: int | None = None, batch_size: int = 16, executor: str = "local"):
        self.domain = domain
        self.executor = executor  # "ray": the batches go to Ray tasks over the cluster, not to local workers
        if executor == "ray":
            from bmil.executors import cluster_cpus

            self.workers = cluster_cpus()  # the cluster this process joined (RAY_ADDRESS, or a local instance)
        else:
            self.workers = usable_cores() if workers is None else workers
        self.batch_size = batch_size
        self._pool: ProcessPoolExecutor | None = None

    def evaluate(
        self,
        policy: Policy,
        starts: np.ndarray,
        seed: int = 0,
        success: SuccessMode = "final",
        progress: bool = False,
        journal: str | Path | None = None,
    ) -> EvalResult:
        """One episode from every row of ``starts``; outcomes in the same order. With ``journal``
        (a file path) finished batches are kept there as they finish, and an evaluation of the
        same policy on the same starts that was stopped part-way runs only the batches it lacked."""
        starts = np.asarray(starts)
        n_batches = math.ceil(len(starts) / self.batch_size)
        kept = _Journal(journal, self._journal_key(policy, starts, seed, success)) if journal else None
        results = kept.load() if kept else []
        todo = sorted(set(range(n_batches)) - {r[0] for r in results})
        bar = tqdm(total=len(starts), initial=sum(len(r[1]) for r in results), desc=f"eval {self.domain.name}",
                   unit="ep", disable=not progress)

        def finished(done: list) -> None:
            if kept:
                kept.append(done)
            results.extend(done)
            bar.update(sum(len(r[1]) for r in done))

        run = partial(_run_batches, self.domain, policy, batch_size=self.batch_size, seed=seed, success_mode=success)
        if self.workers == 0 or len(todo) <= 1:
            for b in todo:
                finished(run(starts, [b]))
        else:
            # ~8 tasks per worker: dynamic load balance and a live progress bar, while the policy
            # is pickled only a few times per evaluation.
            per_task = max(1, math.ceil(len(todo) / (8 * self.workers)))
            tasks = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
            if self.executor == "ray":
                futures = _ray_tasks(partial(run, starts), tasks)
            else:
                pool = self._get_pool()
                with _signals_held():  # the pool starts its workers in submit
                    # each task carries the rows of its own batches, not every start
                    futures = [pool.submit(run, starts[ids[0] * self.batch_size:(ids[-1] + 1) * self.batch_size], ids,
                                           offset=ids[0] * self.batch_size) for ids in tasks]
            try:
                for future in as_completed(futures):
                    finished(future.result())
            except BaseException:  # Ctrl-C, SIGTERM or a failed batch: end the workers now
                if self.executor == "ray":
                    for future in futures:
                        future.cancel()
                # (a pool's futures are left to the pool: cancelling them here races with its own
                # clean-up of a broken pool, which then prints a traceback on Python 3.11)
                self.close(kill=True)
                raise
        bar.close()
        results.sort(key=lambda r: r[0])
        success_arr = np.concatenate([r[1] for r in results]) if results else np.zeros(0, bool)
        steps = np.concatenate([r[2] for r in results]) if results else np.zeros(0, np.int64)
        flags = {key: np.concatenate([r[3][key] for r in results]) if results else np.zeros(0, bool)
                 for key in self.domain.episode_flags}
        assert len(success_arr) == len(starts), "every start must give exactly one episode"
        return EvalResult.of(self.domain, starts, success_arr, steps, success, flags)

    def run(self, policy: Policy, kind: StartsKind, episodes: int, seed: int = 0,
            success: SuccessMode = "final", shard: Shard | None = None, progress: bool = False,
            journal: str | Path | None = None) -> EvalResult:
        """The one evaluation entry: one episode from each of ``episodes`` seeded start states of
        ``kind`` (the training start distribution, or robustness starts outside the demos). A
        network acts through a CPU copy in eval mode. With ``shard`` (DDP ranks) this process runs
        its contiguous share of the starts and every process returns the gathered full result.
        ``journal``: see ``evaluate``; kept by a single process only (not under DDP)."""
        if isinstance(policy, torch.nn.Module):
            policy = copy.deepcopy(policy).cpu().eval()
        make = self.domain.training_starts if kind == "training" else self.domain.robustness_starts
        starts = make(episodes, seed)
        if shard is None or shard.world == 1:
            return self.evaluate(policy, starts, seed, success, progress, journal)
        bounds = np.linspace(0, len(starts), shard.world + 1).astype(int)
        mine = self.evaluate(policy, starts[bounds[shard.rank]: bounds[shard.rank + 1]], seed, success, progress)
        outcome, steps = shard.gather(mine.success, mine.steps, np.diff(bounds))
        flags = {key: shard.gather(value, mine.steps, np.diff(bounds))[0] for key, value in mine.flags.items()}
        return EvalResult.of(self.domain, starts, outcome, steps, success, flags)

    def _journal_key(self, policy: Policy, starts: np.ndarray, seed: int, success: SuccessMode) -> dict:
        """What a batch's outcome depends on: a journal made with any of it different is not used.
        The thread count is in it because float sums, and so actions, depend on it."""
        if not isinstance(policy, torch.nn.Module):
            raise BMILError("Only a network policy (a torch.nn.Module) can keep an evaluation journal: "
                            "its weights say whether a journal is its own.")
        weights = hashlib.sha256()
        for name, tensor in policy.state_dict().items():
            weights.update(name.encode())
            weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return {"domain": self.domain.name, "policy": weights.hexdigest(),
                "starts": hashlib.sha256(np.ascontiguousarray(starts).tobytes()).hexdigest(),
                "seed": seed, "success": success, "batch_size": self.batch_size,
                "horizon": self.domain.horizon, "torch_threads": torch.get_num_threads()}

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = _worker_pool(self.workers)
        return self._pool

    def close(self, kill: bool = False) -> None:
        """Shut the pool down; with ``kill``, terminate the workers instead of letting queued and
        running batches finish."""
        if self._pool is not None:
            if kill:
                for process in list(self._pool._processes.values()):  # (no public API ends them)
                    process.terminate()
                # A task still being fed to the ended workers must not hold this process at its exit.
                self._pool._call_queue.cancel_join_thread()
            self._pool.shutdown(wait=not kill, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RandomPolicy:
    """Uniform random actions in [-1, 1], seeded per batch (a lower bound for robustness)."""

    def __init__(self, act_dim: int):
        self.act_dim = act_dim
        self.rng = np.random.default_rng(0)

    def reset(self, num_envs: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.rng.uniform(-1, 1, (len(obs), self.act_dim)), dtype=torch.float32)
