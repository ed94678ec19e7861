"""BMILTrainer: Lightning's Trainer with a fit's lifecycle (its checks first, the run folder's start
record ``run.json``, its clock, its record when it ends), plus the ``check`` and ``evaluate``
subcommands of the CLI (``bmil.check_command``, ``bmil.evaluate_command``)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

import lightning as L

from lightning.pytorch.trainer.states import TrainerStatus

from bmil.check_command import CheckCommand
from bmil.errors import BMILError, find_cause
from bmil.evaluate_command import EvaluateCommand
from bmil.files import copy_file, remove_stale_temporaries, write_record
from bmil.numerics import describe, record
from bmil.preflight import check_fit
from bmil.runs import record as run_record
from bmil.runs.folder import RunFolder
from callbacks.evaluation import best_checkpoint


class BMILTrainer(CheckCommand, EvaluateCommand, L.Trainer):
    def fit(self, model, train_dataloaders=None, val_dataloaders=None, datamodule=None, ckpt_path=None,
            weights_only=None, resume_to: Literal["same", "new"] = "same", tuned_elsewhere: bool = False,
            model_cache: Optional[str] = None):
        started = run_record.COMMAND_STARTED or time.perf_counter()  # the command's start: its imports count
        checked = check_fit(self, model, ckpt_path)  # before the run folder exists
        if model_cache:
            model.use_model_cache(model_cache)
        folder = getattr(self.logger, "log_dir", None) if self.is_global_zero else None  # claims a new one
        resumed = ckpt_path is not None
        try:
            if folder:
                remove_stale_temporaries(folder)  # a write a kill cut short (its process is gone)
                numerics = record()
                print(f"run folder: {folder}\n{describe(numerics)}")
                _append_run_record(Path(folder), numerics, ckpt_path)
            if checked.best_beside is not None and self.is_global_zero:
                self._carry_best(checked.best_beside)
            with run_record.RunClock(Path(folder), resumed, started) if folder else contextlib.nullcontext() as clock, \
                    _writer_thread_errors_reported_once():
                super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)
        except BMILError:
            if folder and getattr(self.logger, "claimed", False) and self.global_step == 0:
                shutil.rmtree(folder, ignore_errors=True)  # a refused start (nothing trained) leaves no folder behind
            raise
        except Exception as e:
            failed = _write_failure(e, folder) if folder else None
            if failed is None:
                raise
            last = RunFolder(folder).last_ckpt
            resume = (f"then resume: --ckpt_path {last} continues from its last checkpoint" if last.is_file()
                      else "then run the fit again")
            raise BMILError(f"bmil fit stopped in epoch {self.current_epoch + 1}: the run folder {folder} cannot be "
                            f"written ({failed.strerror or failed}{f': {failed.filename}' if failed.filename else ''}). Free "
                            f"space or fix the folder's permissions, {resume}.") from None
        if folder and self.state.status == TrainerStatus.FINISHED:  # trained to its end, not stopped
            run_record.write_result(Path(folder), clock.seconds, resumed)
        if folder:
            print(f"run folder: {folder} (checkpoints/, robustness_*.json, robustness/*.png; "
                  f"TensorBoard: tensorboard --logdir {Path(folder).parent.parent})")

    # Lightning's docstring (its Args document --ckpt_path) under bmil's description of `bmil fit`.
    fit.__doc__ = ("Train the config's method on its demonstrations, evaluating as the evaluation groups say; "
                   "every check runs before the run folder is made, which is printed when training starts "
                   "and after the final test."
                   + (L.Trainer.fit.__doc__ or "").partition("\n")[2].replace("        Args:\n", """        Args:
            resume_to: With --ckpt_path <run>/checkpoints/last.ckpt: same (continue in that run's own
                folder) or new (a new version folder, with the run's best.ckpt copied into it).
            tuned_elsewhere: Apply a tuned_<method>.yaml that bmil tune made on another task (refused otherwise;
                the CLI reads it before the fit starts).
            model_cache: A folder where BMIL keeps its backwards model of every epoch and loads the models
                an earlier fit with the same demos, seed and model settings trained (exact; bmil tune's
                trials share one); about three times the model's size an epoch.
""", 1))

    def _carry_best(self, best: Path) -> None:
        """A resumed run's best.ckpt lies beside the checkpoint it resumes; a run continuing in another
        folder (--resume_to new, or its own checkpoint.dirpath) takes a copy (whole, or none)."""
        target = Path(best_checkpoint(self))
        if target.resolve() != best.resolve():
            copy_file(best, target)

@contextlib.contextmanager
def _writer_thread_errors_reported_once():
    """TensorBoard's event writer thread keeps its failed write for the fit's next write, which
    raises it (and the fit ends with one line); its thread does not print it as a traceback too."""
    previous = threading.excepthook

    def hook(args):
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


# What a write raises that cannot succeed: a full disk or quota, a read-only or unwritable folder.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EFBIG}


def _write_failure(error: BaseException, folder: str) -> Optional[OSError]:
    """The failed write behind ``error`` (Lightning's clean-up after a failure can fail on the same
    folder, so it may be the cause or the context of what reaches the fit): an OSError about a file
    in ``folder``, or one that names no file and only a write raises; not a worker's broken pipe, a
    timeout or a file of the user's environment."""
    failed = find_cause(error, OSError)
    if failed is None:
        return None
    if failed.filename is None:
        return failed if failed.errno in _WRITE_ERRNOS else None
    return failed if Path(os.path.abspath(failed.filename)).is_relative_to(os.path.abspath(folder)) else None


def _append_run_record(folder: Path, numerics: dict, ckpt_path: Optional[str]) -> None:
    """``run.json``: one entry per start of the run (a resume adds one), with what its digits depend
    on (the CPU, torch's kernels, the numeric pins and threads)."""
    starts = run_record.read_starts(folder)
    starts.append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resumed_from": ckpt_path,
                   "numerics": numerics})
    write_record(folder / RunFolder.STARTS, {"starts": starts}, indent=1)
