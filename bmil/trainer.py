"""BMILTrainer: Lightning's Trainer plus the ``evaluate`` subcommand of the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

import lightning as L

from bmil.checkpoint import verify_checkpoint
from bmil.errors import BMILError, require
from bmil.run_record import write_record


class BMILTrainer(L.Trainer):
    def fit(self, model, train_dataloaders=None, val_dataloaders=None, datamodule=None, ckpt_path=None,
            weights_only=None, resume_to: Literal["same", "new"] = "same"):
        from lightning.pytorch.trainer.states import TrainerStatus

        from bmil import run_record
        from bmil.numerics import describe, record
        from bmil.preflight import check_fit

        started = run_record.COMMAND_STARTED or time.perf_counter()  # the command's start: its imports count
        checked = check_fit(self, model, ckpt_path)  # before the run folder exists
        folder = getattr(self.logger, "log_dir", None) if self.is_global_zero else None  # claims a new one
        resumed = ckpt_path is not None
        try:
            if folder:
                numerics = record()
                print(f"run folder: {folder}\n{describe(numerics)}")
                _append_run_record(Path(folder), numerics, ckpt_path)
            if checked.best_beside is not None and self.is_global_zero:
                self._carry_best(checked.best_beside)
            with run_record.RunClock(Path(folder), resumed, started) if folder else contextlib.nullcontext() as clock:
                super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)
        except BMILError:
            if folder and getattr(self.logger, "claimed", False) and self.global_step == 0:
                shutil.rmtree(folder, ignore_errors=True)  # a refused start (nothing trained) leaves no folder behind
            raise
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
""", 1))

    def check(self, model, ckpt_path: Optional[str] = None, resume_to: Literal["same", "new"] = "same",
              timed_epochs: int = 2, json_out: Optional[str] = None) -> dict:
        """Run every check of ``bmil fit`` with the same arguments, start no run, and describe the run it
        would make, with its cost estimated from a few timed epochs (in a throwaway folder).

        Args:
            model: The method (from the config).
            ckpt_path: A checkpoint the fit would resume.
            resume_to: As for fit (it decides the run folder described).
            timed_epochs: Epochs trained (and discarded) to time one epoch; 0 skips the estimate.
            json_out: Also write the description, the estimate included, as JSON here.
        """
        from bmil.preflight import check_fit
        from bmil.run_plan import describe_run

        require(timed_epochs >= 0, "--timed_epochs", timed_epochs, "0 (no estimate) or more")
        checked = check_fit(self, model, ckpt_path)
        facts = describe_run(self, model, checked, ckpt_path, timed_epochs)
        if json_out:
            write_record(json_out, facts, indent=1)
        return facts

    def _carry_best(self, best: Path) -> None:
        """A resumed run's best.ckpt lies beside the checkpoint it resumes; a run continuing in another
        folder (--resume_to new, or its own checkpoint.dirpath) takes a copy (whole, or none)."""
        from callbacks.evaluation import _best_checkpoint

        target = Path(_best_checkpoint(self))
        if target.resolve() != best.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copy2(best, tmp)
            os.replace(tmp, target)

    def evaluate(
        self,
        model: L.LightningModule,
        ckpt_path: Optional[str] = None,
        policy: Literal["trained", "expert", "random"] = "trained",
        episodes: int = 10000,
        training_episodes: int = 10,
        seed: int = 0,
        workers: Optional[int] = None,
        success: Literal["final", "any"] = "final",
        plot: Optional[str] = None,
        plot_demos: Optional[str] = None,
        json_out: Optional[str] = None,
        weights_only: Optional[bool] = None,
        video: int = 0,
        video_dir: str = "videos",
        executor: Literal["local", "ray"] = "local",
        ray_address: Optional[str] = None,
    ) -> dict:
        """Measure training success and robustness (success from unseen start states).

        Args:
            model: The method (from the config); its env names the task.
            ckpt_path: Checkpoint whose policy to evaluate (needed for policy=trained).
            policy: trained (the checkpoint's policy), expert (the scripted expert) or random.
            episodes: Robustness episodes, one per seeded start state (the paper: 10,000).
            training_episodes: Episodes from the training start.
            seed: Seed of the start-state list and episode noise.
            workers: Worker processes (default: one per usable core; 0 runs in this process).
            success: Judge success at the final step (as the paper's Table 1) or at any step.
            plot: Save the robustness figure (PNG) here.
            plot_demos: A demo folder to draw over the figure (mazes), e.g. demos/point_umaze_n20_s0.
            json_out: Save the results (rates, CIs, per-start outcomes) as JSON here.
            weights_only: How to unpickle the checkpoint (torch.load's flag; default: Lightning's).
                Accepted here so that a run's saved ``config.yaml`` (written by fit) works as
                ``bmil evaluate --config``.
            video: Replay this many robustness episodes, failures and successes alternately, as
                GIFs (offscreen: MUJOCO_GL=egl unless set) and TensorBoard images.
            video_dir: Where the GIFs go (start<index>_<success|failure>.gif).
            executor: local (worker processes on this machine) or ray (the start states dealt to Ray
                tasks over a cluster; the same outcomes, start for start).
            ray_address: With --executor ray: auto, HOST:PORT, or none to join RAY_ADDRESS or start a
                local Ray instance.
        """
        from bmil.evaluation import Evaluator
        from bmil.executors import join_ray

        require(episodes >= 1, "--episodes", episodes, "at least 1")
        require(training_episodes >= 1, "--training_episodes", training_episodes, "at least 1")
        require(workers is None or workers >= 0, "--workers", workers, "0 (in-process) or more")
        require(video >= 0, "--video", video, "0 (none) or more episodes")
        require(executor == "ray" or not ray_address, "--ray_address", ray_address, "none without --executor ray")
        agent = _agent(model, policy, ckpt_path, seed, weights_only)
        if executor == "ray":
            join_ray(ray_address)
        t0 = time.perf_counter()
        with Evaluator(model.domain, workers, executor=executor) as evaluator:
            train = evaluator.run(agent, "training", training_episodes, seed, success)
            robust = evaluator.run(agent, "robustness", episodes, seed, success, progress=True)
            batch = evaluator.batch_size  # videos replay an episode in its batch
        seconds = time.perf_counter() - t0
        _report(model.domain, policy, train, robust, seconds, plot, plot_demos)
        if video:
            self._videos(model.domain, agent, robust, video, seed, success, video_dir, batch)
        record = {"policy": policy, "ckpt_path": ckpt_path, "training": train.to_dict(),
                  "robustness": robust.to_dict(), "seconds": seconds}
        if json_out:
            write_record(json_out, {**record, **robust.outcomes()})
        return record

    def _videos(self, domain, agent, result, n: int, seed: int, success: str, folder: str, batch: int) -> None:
        from bmil.video import log_gifs, offscreen

        t0 = time.perf_counter()
        paths = offscreen(domain, agent, result, n, seed, folder, success_mode=success, batch_size=batch)
        log_gifs(self.logger, "eval/video", paths, 0)
        print(f"{len(paths)} videos in {folder}/ ({time.perf_counter() - t0:.1f} s): "
              + ", ".join(p.name for p in paths))


def _agent(model, policy: str, ckpt_path: Optional[str], seed: int, weights_only: Optional[bool]):
    """What acts: the checkpoint's agent, the domain's scripted expert or uniform random actions."""
    from bmil.evaluation import RandomPolicy

    if policy == "expert":
        return model.domain.make_expert(seed)
    if policy == "random":
        return RandomPolicy(model.domain.act_dim)
    if ckpt_path is None:
        raise BMILError("evaluate needs --ckpt_path for policy=trained (or --policy expert|random).")
    verify_checkpoint(ckpt_path)
    trained = type(model).load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=weights_only)
    if trained.domain.name != model.domain.name:
        raise BMILError(f"'{ckpt_path}' was trained on {trained.domain.name}, not {model.domain.name}: evaluate "
                        "it with its own run's config.yaml, or pick a checkpoint of this domain.")
    return trained.agent()


def _report(domain, policy: str, train, robust, seconds: float, plot: Optional[str], plot_demos: Optional[str]) -> None:
    """Print the rates (and the mazes' per-cell grid); save the robustness figure if asked."""
    print(f"[{policy}] training start  {train.summary()}")
    print(f"[{policy}] robustness      {robust.summary()}")
    grid = domain.describe(robust)  # the per-cell text grid of mazes ("" elsewhere)
    if grid:
        print(grid)
    print(f"evaluated in {seconds:.1f} s ({robust.steps.sum() / seconds:.0f} env-steps/s)")
    if plot:
        from bmil.demos import load_demos

        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        demos = load_demos(plot_demos, env=domain.name)[0] if plot_demos else None
        domain.robustness_figure(robust, demos).savefig(plot)
        print(f"figure saved to {plot}")


def _append_run_record(folder: Path, numerics: dict, ckpt_path: Optional[str]) -> None:
    """``run.json``: one entry per start of the run (a resume adds one), with what its digits depend
    on (the CPU, torch's kernels, the numeric pins and threads)."""
    path = folder / "run.json"
    try:
        starts = list(json.loads(path.read_text())["starts"]) if path.is_file() else []
    except (ValueError, KeyError, TypeError) as e:
        raise BMILError(f"{path} is damaged ({type(e).__name__}: {e}); it only records the run's starts: delete "
                        "it and run the command again.") from None
    starts.append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resumed_from": ckpt_path,
                   "numerics": numerics})
    write_record(path, {"starts": starts}, indent=1)
