"""Periodic evaluation during ``bmil fit``: training success and robustness.

Both callbacks go through ``Evaluator.run``, the one evaluation path (``bmil validate``/``test`` and
``bmil evaluate`` use it too): a CPU copy of the method's agent, a pool of worker processes per
rank; under DDP the start list is split across ranks and the per-start outcomes are gathered, so
every rank logs the same full result.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import matplotlib.pyplot as plt

from bmil.cluster import join_ray
from bmil.distributed import default_workers, rank_shard
from bmil.errors import require
from bmil.evaluation import EvalResult, Evaluator
from bmil.files import write_record
from bmil.runs.folder import RunFolder
from bmil.plots import figure_to_array


class PolicyEvaluation(L.Callback):
    kind = ""  # the start states: "training" or "robustness"
    group = ""  # the config group's name
    metric = ""

    def __init__(self, every_n_epochs: int = 10, episodes: int = 100, seed: int = 0,
                 success: Literal["final", "any"] = "final", workers: Optional[int] = None,
                 executor: Literal["local", "ray"] = "local"):
        """
        Args:
            every_n_epochs: Evaluate after every this many epochs (0: never during fit).
            episodes: Episodes per evaluation, one per seeded start state.
            seed: Seed of the start-state list (the same starts at every evaluation).
            success: Judge success at the final step (the paper's Table 1) or at any step.
            workers: Worker processes per rank (default: the usable cores shared by its ranks).
            executor: local (worker processes) or ray (the batches dealt to Ray tasks on the
                cluster of RAY_ADDRESS, or a local Ray instance; the same outcomes).
        """
        group = self.group
        require(every_n_epochs >= 0, f"{group}.every_n_epochs", every_n_epochs, "0 (never) or more")
        require(episodes >= 1, f"{group}.episodes", episodes, "at least 1")
        require(workers is None or workers >= 0, f"{group}.workers", workers, "0 (in-process) or more")
        self.every_n_epochs, self.episodes, self.seed = every_n_epochs, episodes, seed
        self.success, self.workers, self.executor = success, workers, executor
        self._evaluator: Evaluator | None = None

    def runs(self) -> bool:
        """Whether this group evaluates at all during a fit."""
        return self.every_n_epochs > 0

    def resolved_workers(self, trainer) -> int:
        if self.executor == "ray":
            return 0  # no local worker processes: the cluster evaluates
        return default_workers(trainer) if self.workers is None else self.workers

    def check(self, trainer) -> None:
        """Settings that depend on the other groups, checked before the run starts (bmil.preflight)."""

    def evaluate(self, trainer, agent, episodes: int, progress: bool = False, journal: Path | None = None) -> EvalResult:
        if self._evaluator is None:
            if self.executor == "ray":
                join_ray()
            self._evaluator = Evaluator(trainer.lightning_module.domain, self.resolved_workers(trainer), backend=self.executor)
        return self._evaluator.run(agent, self.kind, episodes, self.seed, self.success, rank_shard(trainer),
                                   progress=progress and trainer.is_global_zero, journal=journal)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            result = self.evaluate(trainer, pl_module.agent(), self.episodes)
            epoch = trainer.current_epoch + 1
            _log(trainer, result.metrics(self.metric), epoch)
            pl_module.log(self.metric.split("/")[-1], result.rate, prog_bar=True, logger=False, batch_size=1)
            self.on_result(trainer, result, f"epoch{epoch:04d}", epoch)

    def on_result(self, trainer, result: EvalResult, tag: str, epoch: int) -> None:
        """A finished evaluation after ``epoch`` epochs (the x axis of every logged curve)."""

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None


class TrainingSuccess(PolicyEvaluation):
    """Success rate from the training (demonstration) starts every ``every_n_epochs`` epochs."""

    kind, group, metric = "training", "training_success", "eval/training_success"


class Robustness(PolicyEvaluation):
    """Robustness (success from unseen starts) on a seeded subset during training, and on
    ``final_episodes`` starts (the paper's 10,000) when fit ends; logs rate, 95% CI and the
    robustness figure to TensorBoard, and writes PNGs plus the final per-start JSON to the run
    folder."""

    kind, group, metric = "robustness", "robustness", "eval/robustness"

    def __init__(self, every_n_epochs: int = 20, episodes: int = 500, final_episodes: int = 10000,
                 seed: int = 0, success: Literal["final", "any"] = "final",
                 workers: Optional[int] = None, figures: bool = True, draw_demos: bool = True,
                 videos: int = 0, executor: Literal["local", "ray"] = "local", test_last: bool = True,
                 validation: Optional["Validation"] = None):
        """
        Args:
            every_n_epochs: Evaluate after every this many epochs (0: never during fit).
            episodes: Episodes of the periodic evaluations (a seeded subset of the final starts).
            final_episodes: Episodes of the evaluation when fit ends (0: skip it).
            seed: Seed of the start-state list.
            success: Judge success at the final step (the paper's Table 1) or at any step.
            workers: Worker processes per rank (default: the usable cores shared by its ranks).
            figures: Log the robustness figure to TensorBoard and save it as PNG.
            draw_demos: Draw the demonstrations over the figure where it supports that (mazes).
            videos: Replay this many final-test episodes (failures and successes alternately) as
                GIFs in videos/<final|best>/ and TensorBoard, rendered offscreen.
            executor: local (worker processes) or ray (the batches dealt to Ray tasks on the
                cluster of RAY_ADDRESS, or a local Ray instance; the same outcomes).
            test_last: Test the last policy where validation keeps a best one (false: the best
                only, what bmil tune's final runs report).
            validation: The fit's validation, whose best policy the final test tests beside the
                last (handed over by bmil fit; none: the last policy only).
        """
        super().__init__(every_n_epochs, episodes, seed, success, workers, executor)
        self.validation, self.test_last = validation, test_last
        require(final_episodes >= 0, "robustness.final_episodes", final_episodes, "0 (skip) or more")
        require(videos >= 0, "robustness.videos", videos, "0 (none) or more")
        self.final_episodes, self.figures, self.draw_demos = final_episodes, figures, draw_demos
        self.videos = videos

    def on_result(self, trainer, result: EvalResult, tag: str, epoch: int) -> None:
        if not (self.figures and trainer.is_global_zero):
            return
        demos = trainer.lightning_module.demo_data if self.draw_demos else None
        fig = self._evaluator.domain.robustness_figure(result, demos)
        lo, hi = result.ci
        label = {"final": "final test, last policy", "best": "final test, best policy by validation"}.get(tag, "robustness")
        # The title names the epoch the policy is from (the best's is earlier than the final test).
        policy_epoch = self.validation.best_epoch if tag == "best" else epoch
        fig.suptitle(f"{label}, epoch {policy_epoch}\n{100 * result.rate:.1f}% of {result.episodes} starts "
                     f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}%)", fontsize=8)
        with warnings.catch_warnings():  # some figures' axes (colour bars) do not fit tight_layout
            warnings.simplefilter("ignore")
            fig.tight_layout(rect=(0, 0, 1, 0.92))  # room for the two title lines
        folder = run_folder(trainer) / "robustness"
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"{tag}.png")
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            name = "eval/best_robustness_figure" if tag == "best" else "eval/robustness_figure"
            experiment.add_image(name, figure_to_array(fig), epoch, dataformats="HWC")
        plt.close(fig)

    def runs(self) -> bool:
        return self.every_n_epochs > 0 or self.final_episodes > 0

    def check(self, trainer) -> None:
        validation = self.validation
        if validation is not None and validation.every_n_epochs > 0:
            require(validation.seed != self.seed, "validation.seed", validation.seed,
                    f"a seed other than robustness.seed ({self.seed}): the best policy must be chosen "
                    "on starts the final test never uses")

    def on_fit_end(self, trainer, pl_module) -> None:
        """The final test of the last policy (unless ``test_last`` is off) and, when validation
        kept one, of the best policy."""
        if self.final_episodes <= 0:
            return
        validation = self.validation
        best = validation.best_agent(trainer, pl_module) if validation is not None else None
        agent = pl_module.agent()
        last = None
        if best is None or self.test_last:
            last = self._final_test(trainer, agent, "final")
            self._report(trainer, last, "final", "" if best is None else "the last policy", agent)
        if best is None:
            return
        which = f"the best by validation, epoch {validation.best_epoch}"
        if validation.best.get("step") == trainer.global_step:
            # Chosen at the last check with no optimizer step since: the same weights, the same outcomes.
            last = last or self._final_test(trainer, agent, "best")
            self._report(trainer, last, "best", f"{which}: the last policy", agent)
        else:
            result = self._final_test(trainer, best, "best")
            self._report(trainer, result, "best", which, best)

    def _final_test(self, trainer, agent, tag: str) -> EvalResult:
        """The final test, kept batch by batch in a journal in the run folder until its record is
        written (one process only, not under DDP), so that a run stopped during its test and
        resumed from last.ckpt runs only the batches it lacked."""
        journal = _journal(trainer, tag) if trainer.world_size == 1 else None
        return self.evaluate(trainer, agent, self.final_episodes, progress=True, journal=journal)

    def _report(self, trainer, result: EvalResult, tag: str, which: str, agent) -> None:
        epoch = trainer.current_epoch  # epochs done: the final test sits at the end of the epoch axis
        self.on_result(trainer, result, tag, epoch)
        metrics = result.metrics(f"eval/{tag}_robustness")
        if tag == "final":  # TensorBoard's HParams tab compares runs by hp_metric
            metrics["hp_metric"] = result.rate
        _log(trainer, metrics, epoch)
        if trainer.is_global_zero:
            write_record(run_folder(trainer) / RunFolder.robustness_name(tag), result.record())
            _journal(trainer, tag).unlink(missing_ok=True)
            print(f"{tag} robustness{f' ({which})' if which else ''}: {result.summary()}")
            text = self._evaluator.domain.describe(result)
            if text:
                print(text)
            if self.videos:
                self._record(trainer, result, tag, agent, epoch)

    def _record(self, trainer, result: EvalResult, tag: str, agent, epoch: int) -> None:
        from bmil.video import log_gifs, offscreen

        folder = run_folder(trainer) / "videos" / tag
        paths = offscreen(self._evaluator.domain, agent, result, self.videos, self.seed, folder,
                          success_mode=self.success, batch_size=self._evaluator.batch_size)
        log_gifs(trainer.logger, f"eval/{tag}_video", paths, epoch)
        print(f"{len(paths)} videos of the {tag} test in {folder}")


class Validation(PolicyEvaluation):
    """Robustness on *validation* starts, drawn with their own seed so that they are never the
    test starts, every ``every_n_epochs`` epochs; the policy with the highest validation rate
    (the earliest on ties) is saved as ``checkpoints/best.ckpt`` and, when fit ends, tested beside
    the last one (``robustness_best.json``). The curve goes to ``validation.json``."""

    kind, group, metric = "robustness", "validation", "eval/val_robustness"

    def __init__(self, every_n_epochs: int = 0, episodes: int = 200, seed: int = 1,
                 success: Literal["final", "any"] = "final", workers: Optional[int] = None,
                 executor: Literal["local", "ray"] = "local", after_epoch: int = 0):
        """
        Args:
            every_n_epochs: Validate after every this many epochs (0: never; no best policy).
            episodes: Validation episodes, one per seeded start state.
            seed: Seed of the validation starts; must differ from robustness.seed.
            success: Judge success at the final step or at any step.
            workers: Worker processes per rank (default: the usable cores shared by its ranks).
            executor: local (worker processes) or ray (Ray tasks; the same outcomes).
            after_epoch: Skip the checks up to this epoch (bmil tune's trials and finalists skip
                those that neither their pruning nor their score reads; the checks that run are
                the same, and so is the training).
        """
        super().__init__(every_n_epochs, episodes, seed, success, workers, executor)
        require(after_epoch >= 0, "validation.after_epoch", after_epoch, "0 (every check) or more")
        self.after_epoch = after_epoch
        self.history: list[dict] = []  # every check; the best is the first with the highest rate
        self._best_agent = None
        self._started = 0.0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 > self.after_epoch:
            self._started = time.perf_counter()
            super().on_train_epoch_end(trainer, pl_module)

    @property
    def best(self) -> dict:
        return max(self.history, key=lambda check: check["rate"], default={"epoch": 0, "rate": -1.0})

    @property
    def best_epoch(self) -> int:
        return self.best["epoch"]

    def on_result(self, trainer, result: EvalResult, tag: str, epoch: int) -> None:
        lo, hi = result.ci
        check = {"epoch": epoch, "step": trainer.global_step, "rate": result.rate,
                 "ci": [lo, hi], "episodes": result.episodes}
        if result.rate > self.best["rate"]:
            self._best_agent = copy.deepcopy(trainer.lightning_module.agent()).cpu()
            trainer.save_checkpoint(best_checkpoint(trainer), weights_only=True)  # every rank: a collective under DDP
        self.history.append(check)
        _log(trainer, {"eval/val_best_robustness": self.best["rate"]}, epoch)
        if trainer.is_global_zero:
            folder = run_folder(trainer)
            write_record(folder / RunFolder.VALIDATION,
                         {"best_epoch": self.best_epoch, "best_rate": self.best["rate"], "seed": self.seed,
                          "history": self.history}, indent=1)
            self._write_clock(folder, time.perf_counter() - self._started)

    def _write_clock(self, folder: Path, seconds: float) -> None:
        """Each check's wall time (what a check bmil tune skips would have cost), continued on resume."""
        path = folder / RunFolder.VALIDATION_CLOCK
        earlier = json.loads(path.read_text()).get("seconds", []) if path.is_file() else []
        timed = [*earlier[:len(self.history) - 1], round(seconds, 3)]
        write_record(path, {"epochs": [check["epoch"] for check in self.history][-len(timed):], "seconds": timed},
                     indent=1)

    def best_agent(self, trainer, pl_module):
        """The best policy's agent (from best.ckpt after a resume), or None if none yet."""
        if self._best_agent is None and self.history:
            best = type(pl_module).load_from_checkpoint(best_checkpoint(trainer), map_location="cpu",
                                                        weights_only=True)
            self._best_agent = best.agent()
        return self._best_agent

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])  # checkpoints of earlier versions also hold a best_path: unused


def _log(trainer, metrics: dict[str, float], epoch: int) -> None:
    """Evaluation scalars at x = epochs done (the epoch of the prints, figures and validation.json),
    not at Lightning's step; loggers write on rank 0 only."""
    if trainer.logger is not None:
        trainer.logger.log_metrics(metrics, step=epoch)


def best_checkpoint(trainer) -> str:
    folder = run_folder(trainer)
    checkpoints = trainer.checkpoint_callback.dirpath
    return str(Path(checkpoints) / RunFolder.BEST_CKPT if checkpoints else folder.best_ckpt)


def _journal(trainer, tag: str) -> Path:
    return run_folder(trainer) / RunFolder.journal_name(tag)


def run_folder(trainer) -> RunFolder:
    # The logger's folder, not trainer.log_dir: that one broadcasts, and only rank 0 gets here.
    log_dir = getattr(trainer.logger, "log_dir", None)
    return RunFolder(log_dir or trainer.default_root_dir)


def evaluation_callbacks(trainer) -> list[PolicyEvaluation]:
    """The fit's evaluation groups (training_success, robustness, validation)."""
    return [c for c in trainer.callbacks if isinstance(c, PolicyEvaluation)]
