"""``bmil check``: every check of a fit, no run, and a description of the run it would make with its
cost estimated from a few timed epochs and two timed batches of evaluation episodes (trained in a
throwaway folder, discarded)."""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import torch

from bmil.evaluation import Evaluator
from bmil.errors import require
from bmil.files import check_writable, write_record
from bmil.numerics import describe, record
from bmil.preflight import check_fit
from callbacks.evaluation import evaluation_callbacks

_EVAL_BATCH = 16  # the evaluation's batch: episodes stepped together


class CheckCommand:
    """The ``check`` subcommand of ``BMILTrainer``."""

    def check(self, model, ckpt_path: Optional[str] = None, resume_to: Literal["same", "new"] = "same",
              timed_epochs: int = 2, json_out: Optional[str] = None, tuned_elsewhere: bool = False) -> dict:
        """Run every check of ``bmil fit`` with the same arguments, start no run, and describe the run it
        would make, with its cost estimated from a few timed epochs (in a throwaway folder).

        Args:
            model: The method (from the config).
            ckpt_path: A checkpoint the fit would resume.
            resume_to: As for fit (it decides the run folder described).
            timed_epochs: Epochs trained (and discarded) to time one epoch; 0 skips the estimate.
            json_out: Also write the description, the estimate included, as JSON here.
            tuned_elsewhere: As for fit (a tuned_<method>.yaml made on another task; the CLI reads it).
        """
        require(timed_epochs >= 0, "--timed_epochs", timed_epochs, "0 (no estimate) or more")
        if json_out:
            check_writable(json_out, "--json_out")
        checked = check_fit(self, model, ckpt_path)
        facts = describe_run(self, model, checked, ckpt_path, timed_epochs)
        if json_out:
            write_record(json_out, facts, indent=1)
        return facts


def describe_run(trainer, model, checked, ckpt_path: Optional[str], timed_epochs: int) -> dict:
    """Print the run and return its facts (the estimate included)."""
    domain, cfg = model.domain, model.policy_cfg
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
    done = checked.epochs_done
    left = None if max_epochs is None else max(0, max_epochs - done)
    budgets = _evaluation_budgets(trainer, done, max_epochs)
    facts = {
        "environment": {"name": domain.name, "observation": domain.obs_dim, "action": domain.act_dim,
                        "horizon": domain.horizon},
        "demos": checked.demos,
        "method": type(model).__name__,
        "settings": {k: v for k, v in model.hparams.items()
                     if k not in ("env", "demos", "seed") and not k.startswith("_")},
        "seed": model.seed,
        "epochs": max_epochs, "epochs_done": done, "policy_steps_per_epoch": cfg.steps_per_epoch,
        "evaluation": budgets, "evaluation_workers": checked.evaluation_workers,
        "run_folder": _run_folder(trainer, ckpt_path), "numerics": record(),
    }
    if timed_epochs and left:
        facts["estimate"] = _estimate(model, timed_epochs, left, budgets, checked.evaluation_workers)
    print(_text(facts))
    return facts


def _evaluation_budgets(trainer, done: int, max_epochs: Optional[int]) -> dict:
    """Episodes each evaluation group runs after epoch ``done`` up to ``max_epochs`` (None: no limit)."""
    budgets, callbacks = {}, evaluation_callbacks(trainer)
    validating = any(c.group == "validation" and c.every_n_epochs for c in callbacks)
    for callback in callbacks:
        every, skipped = callback.every_n_epochs, max(done, getattr(callback, "after_epoch", 0))
        checks = 0 if not every or max_epochs is None else max(0, max_epochs // every - skipped // every)
        budget = {"every_n_epochs": callback.every_n_epochs, "episodes": callback.episodes, "checks": checks,
                  "total": checks * callback.episodes}
        final = getattr(callback, "final_episodes", 0)
        if final:
            tests = 2 if validating and callback.test_last else 1  # the best policy by validation beside the last
            budget.update(final_episodes=final, final_total=tests * final, total=budget["total"] + tests * final)
        budgets[callback.group] = budget
    return budgets


def _run_folder(trainer, ckpt_path: Optional[str]) -> str:
    logger = trainer.logger
    if logger is None:
        return str(Path(trainer.default_root_dir))
    folder = logger.next_log_dir() if hasattr(logger, "next_log_dir") else logger.log_dir
    return f"{folder} ({'continued' if ckpt_path and Path(folder).is_dir() else 'new'})"


class _EpochClock(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def _estimate(model, timed_epochs: int, epochs: int, budgets: dict, workers: int) -> dict:
    """Core-minutes: the last timed epoch times the epochs left (times torch's threads), plus every
    evaluation episode at the time one timed batch took per episode (one core each)."""
    clock = _EpochClock()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), _quiet_lightning():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=timed_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
                  default_root_dir=folder).fit(model)
    with Evaluator(model.domain, 0) as evaluator:
        evaluator.run(model.agent(), "robustness", _EVAL_BATCH, seed=0)  # builds the envs, as a worker does once
        t0 = time.perf_counter()
        evaluator.run(model.agent(), "robustness", 2 * _EVAL_BATCH, seed=1)
        per_episode = (time.perf_counter() - t0) / (2 * _EVAL_BATCH)
    threads = torch.get_num_threads()
    episodes = sum(b["total"] for b in budgets.values())
    train_s, eval_s = clock.seconds[-1] * epochs * threads, per_episode * episodes
    wall_s = clock.seconds[-1] * epochs + eval_s / max(1, workers)
    return {"epoch_seconds": clock.seconds, "episode_seconds": per_episode, "evaluation_episodes": episodes,
            "training_core_minutes": train_s / 60, "evaluation_core_minutes": eval_s / 60,
            "core_minutes": (train_s + eval_s) / 60, "wall_minutes": wall_s / 60}


class _quiet_lightning:
    """Lightning's start-up lines (accelerator, GPU availability) are not the user's run."""

    def __enter__(self):
        self.loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
        self.levels = [log.level for log in self.loggers]
        for log in self.loggers:
            log.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        for log, level in zip(self.loggers, self.levels):
            log.setLevel(level)


def _text(facts: dict) -> str:
    env, demos = facts["environment"], facts["demos"]
    epochs = "no limit" if facts["epochs"] is None else str(facts["epochs"])
    if facts["epochs_done"]:
        epochs += f" ({facts['epochs_done']} done, resumed)"
    timed = ("its estimate trained a few epochs in a throwaway folder" if "estimate" in facts
             else "no estimate: no epoch was timed")
    lines = [
        f"bmil check: every check passed; the run was not started ({timed}).",
        f"environment   {env['name']}: observation {env['observation']}, action {env['action']}, "
        f"horizon {env['horizon']} steps",
        f"demos         {demos['episodes']} episodes, {demos.get('transitions', '?')} transitions "
        f"({demos.get('format', 'bmil')}) from {demos['path']}",
        f"method        {facts['method']}, seed {facts['seed']}",
        *(f"  {key:<12}{json.dumps(value)}" for key, value in facts["settings"].items()),
        f"epochs        {epochs} x {facts['policy_steps_per_epoch']} policy steps",
        "evaluation    " + "; ".join(_budget_text(name, b) for name, b in facts["evaluation"].items())
        + f" ({facts['evaluation_workers'] or 'no'} worker processes)",
        f"run folder    {facts['run_folder']}",
        describe(facts["numerics"]),
    ]
    if "estimate" in facts:
        e = facts["estimate"]
        lines.append(f"estimate      {e['core_minutes']:.1f} core-minutes ({e['training_core_minutes']:.1f} training at "
                     f"{e['epoch_seconds'][-1]:.2f} s per epoch, {e['evaluation_core_minutes']:.1f} for "
                     f"{e['evaluation_episodes']} evaluation episodes at {e['episode_seconds']:.3f} s each); "
                     f"about {e['wall_minutes']:.1f} minutes of wall time")
    return "\n".join(lines)


def _budget_text(name: str, budget: dict) -> str:
    text = f"{name} {budget['checks']} x {budget['episodes']}" if budget["checks"] else f"{name} off"
    if budget.get("final_episodes"):
        text += f", final test {budget['final_episodes']}"
    return text
