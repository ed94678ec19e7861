"""Test-only callbacks, a domain and a method defined outside bmil, importable by class_path or
import path (pytest puts tests/ on sys.path), and fits that end at once for the tuner's logic."""

import math
from concurrent.futures import Future
from pathlib import Path

import lightning as L
import torch

from bmil.executors import Executor
from bmil.files import write_record
from bmil.methods import BC
from bmil.runs import launch


class StopMidEpoch(L.Callback):
    """Raises before optimizer step ``step`` of ``epoch`` (counting both networks), as a crash
    in the middle of an epoch would."""

    def __init__(self, epoch: int, step: int = 5):
        self.epoch, self.step, self.seen = epoch, step, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.current_epoch == self.epoch:
            self.seen += 1
            if self.seen == self.step:
                raise RuntimeError("simulated crash")


class SavePolicyPerRank(L.Callback):
    """Writes each rank's final policy parameters to <folder>/rank<r>.pt."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.policy.state_dict(), Path(self.folder) / f"rank{trainer.global_rank}.pt")


def small_umaze():
    """A user's own domain, defined outside bmil: the point UMaze with a 60-step horizon."""
    from bmil.domains.maze.domain import PointMazeDomain

    return PointMazeDomain("small_umaze", "umaze", 60)



class StateNoiseBC(BC):
    """A user's own method, defined outside bmil: BC on demo states with Gaussian noise added,
    the demo action as the label (only ``policy_batch`` differs)."""

    def __init__(self, noise: float = 0.1, **kwargs):
        """
        Args:
            noise: Standard deviation of the noise added to demo states.
            **kwargs: BC's settings.
        """
        super().__init__(**kwargs)
        self.noise = noise

    def policy_batch(self):
        obs, action = super().policy_batch()
        return obs + self.noise * torch.randn(obs.shape, generator=self._rng).to(obs.device), action


class InstantFits(Executor):
    """Fits that end at once, for the tuner's own logic: a run's validation score is a function of its
    settings (the nearer its policy lr to 5e-4, the higher), and one whose lr is not positive fails
    as its fit would refuse it (exit code 2). Each writes the record a fit writes."""

    def __init__(self, *args, **kwargs):
        self.submitted: list = []

    def submit(self, out, run):
        launch.before_fit(out, run)
        self.submitted.append(run)
        lr = run.settings["model"]["init_args"]["policy"]["lr"]
        if lr <= 0:
            result = launch.failure(run, "FAILED (exit code 2)")
        else:
            result = {"run_id": run.run_id, "validation_late": 1 / (1 + abs(math.log(lr / 5e-4))), "seconds": 1.0,
                      "robustness": None}
            write_record(run.folder(out) / "result.json", result)
        done = Future()
        done.set_result(result)
        return done

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def use_instant_fits(monkeypatch) -> list:
    """Replace the tuner's executor by ``InstantFits`` and its cost estimate by a fixed one (core-minutes
    of a trial, a finalist and a final run); the executors made, each with the runs it was given."""
    import bmil.tuning.plan
    import bmil.tuning.tuner

    executors: list = []
    monkeypatch.setattr(bmil.tuning.tuner, "make_executor", lambda *a, **k: executors.append(InstantFits()) or executors[-1])
    monkeypatch.setattr(bmil.tuning.plan, "method_minutes", lambda tuner, method: (1.0, 2.0, 3.0))
    return executors
