"""Robustness and training-success evaluation of any batch policy.

A *policy* is any callable mapping a float32 observation tensor (B, obs_dim) to an action tensor
(B, act_dim); if it has ``reset(num_envs, seed)`` (the scripted experts do) that is called before
each batch of episodes. Start states come as an explicit, seeded list of rows, one episode each:
exactly ``len(starts)`` episodes are run and counted, whatever ends early.

Speed: the start list is cut into fixed batches of ``batch_size`` rows, dealt to a backend's worker
processes (``bmil.evaluation.backends``). Batches and per-episode seeds do not depend on the number
of workers, so results are identical for any ``workers``.
"""

from __future__ import annotations

import copy
import hashlib
import math
from concurrent.futures import as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
import torch
from tqdm import tqdm

from bmil.errors import BMILError
from bmil.evaluation.backends import BatchOutcome, ProcessBackend, RayBackend, run_batches
from bmil.evaluation.journal import EvalJournal
from bmil.evaluation.result import EvalResult
from bmil.evaluation.rollout import Policy, SuccessMode
from bmil.system import usable_cores

if TYPE_CHECKING:
    from bmil.domains import Domain

StartsKind = Literal["training", "robustness"]


@dataclass(frozen=True)
class Shard:
    """This process's share of an evaluation split over ``world`` processes (DDP ranks);
    ``gather(success, steps, sizes)`` returns every rank's outcomes in rank order."""

    rank: int
    world: int
    gather: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Evaluator:
    """Runs evaluations on a backend: worker processes on this machine (``workers=0``: in this
    process), or Ray tasks over a cluster (``backend="ray"``).

    Use as a context manager, or call ``close()``; the worker pool starts on the first evaluation.
    """

    def __init__(self, domain: "Domain", workers: int | None = None, batch_size: int = 16,
                 backend: Literal["local", "ray"] = "local"):
        self.domain = domain
        self.backend = RayBackend() if backend == "ray" else ProcessBackend(usable_cores() if workers is None else workers)
        self.workers = self.backend.workers
        self.batch_size = batch_size

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
        kept = EvalJournal(journal, self._journal_key(policy, starts, seed, success)) if journal else None
        results: list[BatchOutcome] = kept.load() if kept else []
        todo = sorted(set(range(n_batches)) - {r.batch for r in results})
        bar = tqdm(total=len(starts), initial=sum(len(r.success) for r in results), desc=f"eval {self.domain.name}",
                   unit="ep", disable=not progress)

        def finished(done: list[BatchOutcome]) -> None:
            if kept:
                kept.append(done)
            results.extend(done)
            bar.update(sum(len(r.success) for r in done))

        run = partial(run_batches, self.domain, policy, batch_size=self.batch_size, seed=seed, success_mode=success)
        if self.workers == 0 or len(todo) <= 1:
            for b in todo:
                finished(run(starts, [b]))
        else:
            # ~8 tasks per worker: dynamic load balance and a live progress bar, while the policy
            # is pickled only a few times per evaluation.
            per_task = max(1, math.ceil(len(todo) / (8 * self.workers)))
            tasks = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
            futures = self.backend.submit(run, starts, tasks, self.batch_size)
            try:
                for future in as_completed(futures):
                    finished(future.result())
            except BaseException:  # Ctrl-C, SIGTERM or a failed batch: end the workers now
                self.backend.abandon(futures)
                raise
        bar.close()
        results.sort(key=lambda r: r.batch)
        success_arr = np.concatenate([r.success for r in results]) if results else np.zeros(0, bool)
        steps = np.concatenate([r.steps for r in results]) if results else np.zeros(0, np.int64)
        flags = {key: np.concatenate([r.flags[key] for r in results]) if results else np.zeros(0, bool)
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
        if kind == "robustness":  # a fit (and bmil evaluate) refused such starts before the work: here, a warning
            self.domain.check_unseen(starts, f"the {episodes} robustness starts of this evaluation (seed {seed})",
                                     refuse=False)
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

    def close(self, kill: bool = False) -> None:
        """Shut the workers down; with ``kill``, end them instead of letting running batches finish."""
        self.backend.close(kill)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
