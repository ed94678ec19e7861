"""Periodic evaluation during ``bmil fit``: training success and robustness.

Both callbacks go through ``Evaluator.run``, the one evaluation path (``bmil validate``/``test`` and
``bmil evaluate`` use it too): a CPU copy of the method's agent, a pool of worker processes per
rank; under DDP the start list is split across ranks and the per-start outcomes are gathered, so
every rank logs the same full result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import lightning as L
import matplotlib.pyplot as plt

from bmil.distributed import default_workers, rank_shard
from bmil.errors import require
from bmil.evaluation import EvalResult, Evaluator, write_record
from bmil.plots import figure_to_array


class _PolicyEvaluation(L.Callback):
    kind = ""  # the start states: "training" or "robustness", also the config group's name
    metric = ""

    def __init__(self, every_n_epochs: int = 10, episodes: int = 100, seed: int = 0,
                 success: Literal["final", "any"] = "final", workers: Optional[int] = None):
        """
        Args:
            every_n_epochs: Evaluate after every this many epochs (0: never during fit).
            episodes: Episodes per evaluation, one per seeded start state.
            seed: Seed of the start-state list (the same starts at every evaluation).
            success: Judge success at the final step (the paper's Table 1) or at any step.
            workers: Worker processes per rank (default: this machine's cores shared by its ranks).
        """
        group = "training_success" if self.kind == "training" else self.kind
        require(every_n_epochs >= 0, f"{group}.every_n_epochs", every_n_epochs, "0 (never) or more")
        require(episodes >= 1, f"{group}.episodes", episodes, "at least 1")
        require(workers is None or workers >= 0, f"{group}.workers", workers, "0 (in-process) or more")
        self.every_n_epochs, self.episodes, self.seed = every_n_epochs, episodes, seed
        self.success, self.workers = success, workers
        self._evaluator: Evaluator | None = None

    def evaluate(self, trainer, pl_module, episodes: int) -> EvalResult:
        if self._evaluator is None:
            workers = default_workers(trainer) if self.workers is None else self.workers
            self._evaluator = Evaluator(pl_module.domain, workers)
        return self._evaluator.run(pl_module.agent(), self.kind, episodes, self.seed, self.success,
                                   rank_shard(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            result = self.evaluate(trainer, pl_module, self.episodes)
            pl_module.log_dict(result.metrics(self.metric), prog_bar=False, batch_size=1)
            pl_module.log(self.metric.split("/")[-1], result.rate, prog_bar=True, logger=False, batch_size=1)
            self.on_result(trainer, result, f"epoch{trainer.current_epoch + 1:04d}")

    def on_result(self, trainer, result: EvalResult, tag: str) -> None:
        pass

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None


class TrainingSuccess(_PolicyEvaluation):
    """Success rate from the training (demonstration) starts every ``every_n_epochs`` epochs."""

    kind, metric = "training", "eval/training_success"


class Robustness(_PolicyEvaluation):
    """Robustness (success from unseen starts) on a seeded subset during training, and on
    ``final_episodes`` starts (the paper's 10,000) when fit ends; logs rate, 95% CI and the
    robustness figure to TensorBoard, and writes PNGs plus the final per-start JSON to the run
    folder."""

    kind, metric = "robustness", "eval/robustness"

    def __init__(self, every_n_epochs: int = 20, episodes: int = 500, final_episodes: int = 10000,
                 seed: int = 0, success: Literal["final", "any"] = "final",
                 workers: Optional[int] = None, figures: bool = True, draw_demos: bool = True):
        """
        Args:
            every_n_epochs: Evaluate after every this many epochs (0: never during fit).
            episodes: Episodes of the periodic evaluations (a seeded subset of the final starts).
            final_episodes: Episodes of the evaluation when fit ends (0: skip it).
            seed: Seed of the start-state list.
            success: Judge success at the final step (the paper's Table 1) or at any step.
            workers: Worker processes per rank (default: this machine's cores shared by its ranks).
            figures: Log the robustness figure to TensorBoard and save it as PNG.
            draw_demos: Draw the demonstrations over the figure where it supports that (mazes).
        """
        super().__init__(every_n_epochs, episodes, seed, success, workers)
        require(final_episodes >= 0, "robustness.final_episodes", final_episodes, "0 (skip) or more")
        self.final_episodes, self.figures, self.draw_demos = final_episodes, figures, draw_demos

    def on_result(self, trainer, result: EvalResult, tag: str) -> None:
        if not (self.figures and trainer.is_global_zero):
            return
        demos = trainer.lightning_module.demo_data if self.draw_demos else None
        fig = self._evaluator.domain.robustness_figure(result, demos)
        folder = _run_dir(trainer) / "robustness"
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"{tag}.png")
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("eval/robustness_figure", figure_to_array(fig), trainer.current_epoch,
                                 dataformats="HWC")
        plt.close(fig)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.final_episodes <= 0:
            return
        result = self.evaluate(trainer, pl_module, self.final_episodes)
        self.on_result(trainer, result, "final")
        if trainer.is_global_zero:
            if trainer.logger is not None:
                trainer.logger.log_metrics(result.metrics("eval/final_robustness"), step=trainer.global_step)
            write_record(_run_dir(trainer) / "robustness_final.json", result.record())
            print(f"final robustness: {result.summary()}")
            text = self._evaluator.domain.describe(result)
            if text:
                print(text)


def _run_dir(trainer) -> Path:
    # The logger's folder, not trainer.log_dir: that one broadcasts, and only rank 0 gets here.
    log_dir = getattr(trainer.logger, "log_dir", None)
    return Path(log_dir or trainer.default_root_dir)
