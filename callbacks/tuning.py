"""``bmil tune``'s trials: the fit reports each validation check to its Optuna trial, and stops
when the pruner finds the trial hopeless (``--trial.*``, set by the tuner; off otherwise)."""

from __future__ import annotations

from typing import Optional

import lightning as L

from bmil.evaluation import write_record


class TrialReport(L.Callback):
    def __init__(self, storage: str = "", study: str = "", number: Optional[int] = None):
        """
        Args:
            storage: The tune's Optuna journal file (empty: not a trial, nothing is reported).
            study: The Optuna study's name in it.
            number: This fit's trial number.
        """
        self.storage, self.study, self.number = storage, study, number
        self._reported = 0
        self._trial = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        from callbacks.evaluation import _run_dir, _validation

        validation = _validation(trainer)
        if not self.storage or validation is None or len(validation.history) == self._reported:
            return
        trial = self._open(trainer.max_epochs)
        for check in validation.history[self._reported:]:  # the checks since the last report
            trial.report(check["rate"], check["epoch"])
        self._reported = len(validation.history)
        if trial.should_prune():
            last = validation.history[-1]
            if trainer.is_global_zero:
                write_record(_run_dir(trainer) / "pruned.json", {"epoch": last["epoch"], "rate": last["rate"]})
            trainer.should_stop = True

    def _open(self, max_epochs: int):
        """The running trial, through the study's storage (the tuner made it, in another process)."""
        if self._trial is None:
            import optuna

            from bmil.tuning.study import make_pruner, open_storage

            study = optuna.load_study(study_name=self.study, storage=open_storage(self.storage),
                                      pruner=make_pruner(max_epochs))
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial
