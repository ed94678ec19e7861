"""Test-only callbacks, a domain and a method defined outside bmil, importable by class_path or
import path (pytest puts tests/ on sys.path)."""

from pathlib import Path

import lightning as L
import torch

from bmil.methods import BC


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
