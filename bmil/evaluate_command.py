"""``bmil evaluate``: training success and robustness of a checkpoint's policy, the scripted expert
or random actions, with intervals, figures, per-start outcomes and videos (a subcommand of the
Trainer, so that LightningCLI builds the model from the config)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import lightning as L

from bmil.checkpoint import verify_checkpoint
from bmil.cluster import join_ray
from bmil.demos import load_demos
from bmil.errors import BMILError, require
from bmil.evaluation import Evaluator, RandomPolicy
from bmil.files import check_writable, write_record
from bmil.preflight import check_robustness_starts
from bmil.video import log_gifs, offscreen


class EvaluateCommand:
    """The ``evaluate`` subcommand of ``BMILTrainer``."""

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
        require(episodes >= 1, "--episodes", episodes, "at least 1")
        require(training_episodes >= 1, "--training_episodes", training_episodes, "at least 1")
        require(workers is None or workers >= 0, "--workers", workers, "0 (in-process) or more")
        require(video >= 0, "--video", video, "0 (none) or more episodes")
        require(executor == "ray" or not ray_address, "--ray_address", ray_address, "none without --executor ray")
        for option, path in (("--json_out", json_out), ("--plot", plot)):
            if path:
                check_writable(path, option)
        model.domain.check_start_settings()
        check_robustness_starts(model.domain, "robustness", seed, [episodes])
        agent = _agent(model, policy, ckpt_path, seed, weights_only)
        if executor == "ray":
            join_ray(ray_address)
        t0 = time.perf_counter()
        with Evaluator(model.domain, workers, backend=executor) as evaluator:
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
        t0 = time.perf_counter()
        paths = offscreen(domain, agent, result, n, seed, folder, success_mode=success, batch_size=batch)
        log_gifs(self.logger, "eval/video", paths, 0)
        print(f"{len(paths)} videos in {folder}/ ({time.perf_counter() - t0:.1f} s): "
              + ", ".join(p.name for p in paths))




def _agent(model, policy: str, ckpt_path: Optional[str], seed: int, weights_only: Optional[bool]):
    """What acts: the checkpoint's agent, the domain's scripted expert or uniform random actions."""
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
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        demos = load_demos(plot_demos, env=domain.name)[0] if plot_demos else None
        domain.robustness_figure(robust, demos).savefig(plot)
        print(f"figure saved to {plot}")
