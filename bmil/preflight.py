"""Every check of a fit, run before its run folder exists and before its first epoch: a setting that
cannot work is one ``bmil: error:`` line at the start, not a failure at epoch 9 or a folder left
behind. ``bmil fit`` runs them first; ``bmil check`` runs them alone and describes the run.

What is checked (the environment itself, its spaces, observation keys, success key and horizon, is
built and checked when the method is constructed, ``bmil.domains``):
- the starts: the robustness and validation starts are unseen (not the training start's states, not
  one state repeated), and every start setting of a configured env changes something;
- the demonstrations: found (or generated into the default cache), readable, of the environment's
  dimensions, finite;
- the settings that depend on the run (the number of epochs) and the evaluation groups' settings;
- the outputs: the run folder and the checkpoints' folder can be made and written;
- a checkpoint to resume: it holds the optimizer state, and the best policy it names is beside it;
- an evaluation worker, a fresh process, builds the environment and resets it to a start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bmil.checkpoint import verify_checkpoint
from bmil.cluster import join_ray
from bmil.demo_formats import read_demos
from bmil.domains.starts import SAMPLE
from bmil.errors import BMILError
from bmil.files import check_folder
from bmil.evaluation import check_worker
from bmil.runs.folder import RunFolder
from bmil.runs.record import read_starts
from callbacks.evaluation import evaluation_callbacks


@dataclass
class Checked:
    """What the checks found, for ``bmil check``'s description of the run."""

    demos: dict
    evaluation_workers: int
    best_beside: Optional[Path] = None  # a resumed run's best.ckpt (its best policy by validation)
    epochs_done: int = 0  # a resumed run's


def check_fit(trainer, model, ckpt_path: Optional[str] = None) -> Checked:
    model.require_method()
    _check_outputs(trainer)
    callbacks = evaluation_callbacks(trainer)
    _check_starts(model.domain, callbacks)  # before demos are generated: nothing could be measured
    demos = _check_demos(model, generate=trainer.local_rank == 0)
    model.check_run(trainer.max_epochs)
    for callback in trainer.callbacks:  # the evaluation groups' and a tune trial's own checks
        if callable(getattr(callback, "check", None)):
            callback.check(trainer)
    best, done = _check_resume(ckpt_path) if ckpt_path else (None, 0)
    if trainer.max_epochs not in (None, -1) and done > trainer.max_epochs:
        raise BMILError(f"{ckpt_path} has trained {done} epochs, more than trainer.max_epochs {trainer.max_epochs}: "
                        f"give --trainer.max_epochs {done + 1} or more to train it further, or evaluate it with "
                        "bmil evaluate.")
    if ckpt_path and hasattr(trainer.logger, "next_log_dir"):
        read_starts(Path(trainer.logger.next_log_dir()))  # the folder it continues: its record of starts readable
    workers = max((c.resolved_workers(trainer) for c in callbacks if c.runs()), default=0)
    if workers > 0:
        check_worker(model.domain)
    if any(c.executor == "ray" for c in callbacks if c.runs()):
        join_ray()  # Ray installed and its cluster reachable, before the run starts
    return Checked(demos, workers, best, done)


def _check_outputs(trainer) -> None:
    """The run folder and the checkpoints' folder can be made and written (nothing is made here)."""
    logger = trainer.logger
    if hasattr(logger, "next_log_dir"):
        check_folder(logger.next_log_dir(), "the run folder (trainer.logger's save_dir, name and version)")
    elif logger is None:  # the run's files go there
        check_folder(trainer.default_root_dir, "trainer.default_root_dir")
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    if dirpath:
        check_folder(dirpath, "checkpoint.dirpath")


def _check_starts(domain, callbacks) -> None:
    """Start settings that change nothing, and robustness or validation starts that are not unseen,
    refused before anything trains (``bmil.domains.starts``): a sample of each group's distribution,
    and each list of starts the fit will evaluate on."""
    domain.check_start_settings()
    for callback in callbacks:
        if callback.kind == "robustness" and callback.runs():
            sizes = (callback.episodes if callback.every_n_epochs else 0, getattr(callback, "final_episodes", 0))
            check_robustness_starts(domain, callback.group, callback.seed, sizes)


def check_robustness_starts(domain, group: str, seed: int, sizes) -> None:
    """The robustness starts of ``seed``, a sample of their distribution and each list of ``sizes``
    (0: none), refused where they are not unseen."""
    for n in sorted({SAMPLE, *sizes} - {0}):
        domain.check_unseen(domain.robustness_starts(n, seed), f"the {n} {group} starts (seed {seed})")


def _check_demos(model, generate: bool) -> dict:
    """The demos the run trains on, generated first where ``prepare_data`` would generate them (by
    one process per machine: the others, DDP ranks started together, find them in ``prepare_data``)."""
    cfg, path = model.demo_cfg, model.demo_path
    if model.demos_to_generate():
        if not generate:
            return {"path": str(path), "episodes": cfg.num, "format": "bmil, generated by local rank 0"}
        model.generate_missing_demos()
    _, meta = read_demos(path, model.domain, cfg.num)
    return {**meta, "path": str(path)}


def _check_resume(ckpt_path: str) -> tuple[Optional[Path], int]:
    """A checkpoint to resume holds the optimizer state, and the best policy by validation it
    names (a run that validated) lies beside it as best.ckpt; that best.ckpt and the epochs done."""
    checkpoint = verify_checkpoint(ckpt_path)
    path = Path(ckpt_path)
    if "optimizer_states" not in checkpoint:
        raise BMILError(f"'{path}' holds a policy's weights only (a best.ckpt), not a run's state: resume from "
                        f"the run's last.ckpt (beside it), or evaluate this one with bmil evaluate.")
    history = [state.get("history") for key, state in checkpoint.get("callbacks", {}).items()
               if key.startswith("Validation") and isinstance(state, dict)]
    validated, done = next((h for h in history if h), None), checkpoint["epoch"] + 1
    if not validated:
        return None, done
    best = path.parent / RunFolder.BEST_CKPT
    if not best.is_file():
        best_epoch = max(validated, key=lambda check: check["rate"])["epoch"]
        raise BMILError(f"Cannot resume: {best} is missing, and {path.name} says this run's best policy by "
                        f"validation (epoch {best_epoch}) is in it. Copy best.ckpt together with {path.name}, "
                        "or start the run again without --ckpt_path.")
    return best, done
