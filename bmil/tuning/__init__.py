"""``bmil tune``: the most robust policy for the user's own task, chosen on validation starts with
Optuna (``study``: the driver; ``space``: the search spaces the methods declare)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from bmil import configs as shipped
from bmil.errors import BMILError
from bmil.cluster import fits_at_once


def tune(configs: str, methods: str = "bmil,bc,noise_bc,ccil", trials: int = 20, jobs: Optional[int] = None,
         out: Optional[str] = None, seed: int = 0, finalists: int = 3, finalist_seeds: int = 2,
         finalist_episodes: Optional[int] = None, final_seeds: int = 3, space: Optional[str] = None,
         sampler: str = "tpe", pruner: str = "median", executor: str = "local",
         ray_address: Optional[str] = None, trial_episodes: Optional[int] = None) -> None:
    """Search each method's settings on validation starts, then test the chosen ones beside the defaults.

    Every trial is a ``bmil fit`` of the config (which must validate) with sampled settings; the test
    starts are used only by the final runs. A rerun of the same command resumes; more --trials adds.

    Args:
        configs: The task's config files, comma-separated; given as --config FILE (repeated for
            layers), as for bmil fit.
        methods: Comma-separated methods to tune: bmil, bc, noise_bc, ccil.
        trials: Finished trials per method (pruned and failed ones count).
        jobs: Fits at once, one core each (default: the usable cores).
        out: Output folder (default tune/<config name>): the Optuna journal, runs/, tuned_<method>.yaml,
            policy.pt (the winner's), table.md, summary.json and figures.
        seed: Seed of the samplers (TPE).
        finalists: Best trials per method trained again on other seeds, beside the defaults, before
            choosing (0: choose the best trial).
        finalist_seeds: Seeds of each finalist's new runs (0: no finalists, as --finalists 0).
        finalist_episodes: Validation starts of each check of the finalists' runs (default: the
            config's validation.episodes).
        final_seeds: Seeds (0, 1, ...) of the final test of the chosen settings and of the defaults
            (0: no test, no policy exported).
        space: A YAML file of changes to the search spaces: {method: {setting: {low, high, log, choices}
            or null to drop it}}, e.g. {bmil: {model.demo_ratio: {low: 0.7, high: 0.95}}}.
        sampler: tpe (seeded, Optuna's default) or grid (each numeric range's ends and middle, every
            choice, each distinct setting once; --trials caps it).
        pruner: median (a trial below the median of the finished ones, after a quarter of training) or
            halving (successive halving: at the first check after a quarter of the config's epochs,
            then at 3x and 9x that epoch, only the best third of the trials there go on).
        executor: local (fit processes on this machine) or ray (trials as tasks on a Ray cluster,
            --jobs of them at once, by default the cluster's CPUs; docs/cluster.md).
        ray_address: With --executor ray: auto, HOST:PORT, or none to join RAY_ADDRESS or start a
            local Ray instance.
        trial_episodes: Validation starts of each check of the trials (default: half the config's
            validation.episodes; the finalists' fresh runs decide).
    """
    import yaml

    from bmil.tuning.tuner import Tuner

    for name, value, least in (("--trials", trials, 1), ("--jobs", jobs, 1), ("--finalists", finalists, 0),
                               ("--finalist_seeds", finalist_seeds, 0), ("--finalist_episodes", finalist_episodes, 1),
                               ("--trial_episodes", trial_episodes, 1), ("--final_seeds", final_seeds, 0)):
        if value is not None and value < least:  # (None: the config's default)
            raise BMILError(f"{name} = {value} is out of range: it must be at least {least}.")
    changes = None
    if space:
        path = Path(space)
        if not path.is_file():
            raise BMILError(f"--space {space}: file not found.")
        changes = yaml.safe_load(path.read_text())
        if not isinstance(changes, dict):
            raise BMILError(f"--space {space}: a mapping of methods to their changes, e.g. "
                            "{bmil: {model.demo_ratio: {low: 0.7, high: 0.95}}}.")
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    configs = [shipped.resolve(c.strip()) for c in configs.split(",") if c.strip()]  # a file, or a shipped name
    for path in configs:
        if not Path(path).is_file():
            raise BMILError(f"--config {path}: file not found.")
    folder = Path(out) if out else Path("tune") / Path(configs[-1]).stem
    Tuner(configs, chosen, trials, fits_at_once(jobs, executor, ray_address), folder, seed, finalists, finalist_seeds,
          finalist_episodes, final_seeds, changes, sampler, executor=executor, ray_address=ray_address,
          pruner=pruner, trial_episodes=trial_episodes).run()
