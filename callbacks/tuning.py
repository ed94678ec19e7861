"""``bmil tune``'s trials: the fit reports each validation check to its Optuna trial, and stops
when the pruner finds the trial hopeless (``--trial.*``, set by the tuner; off otherwise)."""

from __future__ import annotations

from typing import Literal, Optional

import lightning as L

from bmil.files import write_record
from bmil.runs.folder import RunFolder
from bmil.tuning.storage import make_pruner, open_storage
from callbacks.evaluation import Validation, run_folder


class TrialReport(L.Callback):
    def __init__(self, storage: str = "", study: str = "", number: Optional[int] = None,
                 validation: Optional[Validation] = None, pruner: Literal["median", "halving"] = "median",
                 first_epoch: int = 0):
        """
        Args:
            storage: The tune's Optuna journal file, or grpc://HOST:PORT where a tune on a Ray cluster serves it
                (empty: not a trial, nothing is reported).
            study: The Optuna study's name in it.
            number: This fit's trial number.
            validation: The fit's validation, whose checks are reported (handed over by bmil fit).
            pruner: median, or halving (successive halving from first_epoch on).
            first_epoch: The first epoch whose check successive halving compares (every trial's the same).
        """
        self.storage, self.study, self.number, self.validation = storage, study, number, validation
        self.pruner, self.first_epoch = pruner, first_epoch
        self._reported = 0
        self._trial = None
        self._known: set[int] = set()  # the epochs the trial holds a report of

    def check(self, trainer) -> None:
        """Before the run (bmil.preflight): a fit told to report to a trial finds it running."""
        if not self.storage:
            return
        from pathlib import Path

        from optuna.trial import TrialState

        from bmil.errors import BMILError

        fix = "(bmil tune sets --trial.*; leave them out to train on your own)"
        if self.storage.startswith("grpc://"):  # the driver's journal, served to a Ray node
            proxy = open_storage(self.storage)
            try:
                proxy.wait_server_ready(timeout=60)
            except ConnectionError:
                raise BMILError(f"--trial.storage {self.storage}: the tune's storage does not answer from this "
                                f"machine; its port must be open to the cluster's nodes {fix}.") from None
            finally:
                proxy.close()
        elif not Path(self.storage).is_file():
            raise BMILError(f"--trial.storage {self.storage}: no such Optuna journal {fix}.")
        try:
            trial = self._open(trainer.max_epochs)
        except (KeyError, IndexError, TypeError):
            raise BMILError(f"--trial.study {self.study!r} has no trial {self.number} in {self.storage} {fix}.") from None
        state = trial.study.get_trials(deepcopy=False)[self.number].state
        if state != TrialState.RUNNING:
            raise BMILError(f"trial {self.number} of {self.study!r} is {state.name.lower()}, not running: a finished "
                            f"trial takes no more reports {fix}.")

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.storage and trainer.is_global_zero:  # a resumed trial is pruned again, or not at all
            (run_folder(trainer) / RunFolder.PRUNED).unlink(missing_ok=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        validation = self.validation
        if not self.storage or validation is None or len(validation.history) == self._reported:
            return
        prune = False
        if trainer.is_global_zero:  # one rank reports and decides; the others follow
            trial = self._open(trainer.max_epochs)
            for check in validation.history[self._reported:]:  # the checks since the last report
                if check["epoch"] not in self._known:  # a resumed fit's earlier checks are there already
                    trial.report(check["rate"], check["epoch"])
                    self._known.add(check["epoch"])
            last = validation.history[-1]
            # A trial that has trained to its end is finished, not pruned: its score counts.
            prune = last["epoch"] < (trainer.max_epochs or 0) and trial.should_prune()
            if prune:
                write_record(run_folder(trainer) / RunFolder.PRUNED, {"epoch": last["epoch"], "rate": last["rate"]})
        self._reported = len(validation.history)
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune)
        if prune:
            trainer.should_stop = True

    def _open(self, max_epochs: int):
        """The running trial, through the study's storage (the tuner made it, in another process)."""
        if self._trial is None:
            import optuna

            study = optuna.load_study(study_name=self.study, storage=open_storage(self.storage),
                                      pruner=make_pruner(max_epochs, self.pruner, self.first_epoch))
            frozen = study.get_trials(deepcopy=False)[self.number]
            self._known = set(frozen.intermediate_values)
            self._trial = optuna.Trial(study, frozen._trial_id)
        return self._trial
