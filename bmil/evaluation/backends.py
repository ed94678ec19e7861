"""Where an evaluation's batches of episodes run: a pool of worker processes on this machine
(``ProcessBackend``), or Ray tasks over a cluster (``RayBackend``). Each worker holds a copy of the
policy and steps its own environments, one batched policy call per step: no per-step traffic
between processes. A batch's outcomes do not depend on where it ran."""

from __future__ import annotations

import multiprocessing as mp
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from bmil.cluster import cluster_cpus
from bmil.errors import BMILError
from bmil.numerics import pinned_environment
from bmil.evaluation.rollout import Policy, SuccessMode, episode_seed, run_episodes
from bmil.system import die_with_parent, load_glfw_directly, signals_held

if TYPE_CHECKING:
    from bmil.domains import Domain


@dataclass
class BatchOutcome:
    """The episodes of one batch of an evaluation's start list (rows ``batch * batch_size`` on)."""

    batch: int
    success: np.ndarray  # (n,) bool
    steps: np.ndarray  # (n,) int
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # the domain's episode flags at the end


# ---- worker side ------------------------------------------------------------------------------
_WORKER_ENVS: dict[str, list] = {}


def _envs_for(domain: "Domain", n: int) -> list:
    envs = _WORKER_ENVS.setdefault(domain.key, [])
    while len(envs) < n:
        envs.append(domain.make_env())
    return envs


def run_batches(domain: "Domain", policy: Policy, starts: np.ndarray, batch_ids: list[int], *, batch_size: int,
                seed: int, success_mode: SuccessMode, offset: int = 0) -> list[BatchOutcome]:
    """Run the given batches of the start list, of which ``starts`` holds the rows from ``offset`` on."""
    envs = _envs_for(domain, batch_size)
    out = []
    for b in batch_ids:
        lo = b * batch_size
        rows = starts[lo - offset: lo - offset + batch_size]
        seeds = [episode_seed(seed, lo + i) for i in range(len(rows))]
        rollout = run_episodes(envs, policy, rows, seeds, domain.horizon, success_mode,
                               stop_on_success=domain.terminates_on_success, flags=tuple(domain.episode_flags))
        out.append(BatchOutcome(b, rollout.success, rollout.steps, rollout.flags))
    return out


def _worker_init() -> None:
    # Each worker steps its own envs and runs its own small policy: one thread each, or the
    # processes fight over the same cores.
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group; the main process alone decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """Evaluation worker processes. Spawned, not forked: forking a process that already runs
    torch/OpenMP threads can hang."""
    load_glfw_directly()
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
        with signals_held(), pinned_environment():
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


# ---- the backends -----------------------------------------------------------------------------
Batches = Callable[..., list[BatchOutcome]]  # run_batches with the evaluation's domain, policy and settings


class ProcessBackend:
    """A persistent pool of ``workers`` spawned processes on this machine, started on first use."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, run: Batches, starts: np.ndarray, tasks: list[list[int]], batch_size: int) -> list[Future]:
        if self._pool is None:
            self._pool = _worker_pool(self.workers)
        with signals_held(), pinned_environment():  # the pool starts its workers in submit, with the pins
            # each task carries the rows of its own batches, not every start
            return [self._pool.submit(run, starts[ids[0] * batch_size:(ids[-1] + 1) * batch_size], ids,
                                      offset=ids[0] * batch_size) for ids in tasks]

    def abandon(self, futures: list[Future]) -> None:
        """Ctrl-C, SIGTERM or a failed batch: end the workers now. (The pool's futures are left to
        the pool: cancelling them here races with its own clean-up of a broken pool, which then
        prints a traceback on Python 3.11.)"""
        self.close(kill=True)

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


def _in_ray_task(run: Batches, ids: list[int]) -> list[BatchOutcome]:
    """A Ray task's batches, as a worker process runs them (one thread)."""
    torch.set_num_threads(1)
    return run(ids)


class RayBackend:
    """Ray tasks of one CPU each over the cluster this process joined (``RAY_ADDRESS``, or a local
    instance); the evaluation (domain, policy, starts) is sent to the cluster once."""

    def __init__(self):
        self.workers = cluster_cpus()

    def submit(self, run: Batches, starts: np.ndarray, tasks: list[list[int]], batch_size: int) -> list[Future]:
        import ray

        shared = ray.put(partial(run, starts))
        remote = ray.remote(num_cpus=1, max_retries=3)(_in_ray_task)
        return [remote.remote(shared, ids).future() for ids in tasks]

    def abandon(self, futures: list[Future]) -> None:
        for future in futures:
            future.cancel()

    def close(self, kill: bool = False) -> None:
        pass
