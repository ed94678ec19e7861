"""A tune's plan, before the work: the fits left per stage and their core-hours, each method's cost
timed by ``bmil check`` on the config."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

from bmil.errors import BMILError
from bmil.methods import get_method
from bmil.runs.folder import RunFolder
from bmil.system import usable_cores
from bmil.tuning.storage import JOURNAL, mend_journal, open_storage


def print_plan(tuner) -> None:
    """Before the work: the fits left to run and their core-hours, estimated per method by ``bmil
    check`` (two timed epochs and two batches of episodes of that method on the config)."""
    finalists = (tuner.finalists + 1) * tuner.finalist_seeds if tuner.finalists else 0  # the defaults compete
    done = runs_done(tuner)
    left, stage_minutes, per_trial = [0, 0, 0], [0.0, 0.0, 0.0], {}
    for method in tuner.methods:
        todo = [max(0, n - d) for n, d in zip((tuner.trials, finalists, 2 * tuner.final_seeds), done[method])]
        if any(todo):  # (a method with nothing left is not timed)
            costs = method_minutes(tuner, method)
            stage_minutes = [m + n * c for m, n, c in zip(stage_minutes, todo, costs)]
            left = [a + b for a, b in zip(left, todo)]
            per_trial[method] = costs[0]
    minutes = sum(stage_minutes)
    stages = ", ".join(f"{name} {m / 60:.2f}" for name, m in zip(("trials", "finalists", "final runs"), stage_minutes))
    finished = [sum(d[i] for d in done.values()) for i in range(3)]
    done_text = f" to do ({finished[0]}, {finished[1]} and {finished[2]} done)" if any(finished) else ""
    each = ", ".join(f"{get_method(x).label} {c:.1f}" for x, c in per_trial.items()) or "none left"
    hours = minutes / 60
    print(f"plan: {left[0]} trials, {left[1]} finalist runs and {left[2]} final runs{done_text} of "
          f"{', '.join(get_method(x).label for x in tuner.methods)} on {tuner.domain}; about {hours:.1f} core-hours before "
          f"pruning ({stages}; core-minutes a trial, by bmil check: {each}); {tuner.jobs} fits at once on "
          f"{usable_cores()} usable cores, about {hours / tuner.jobs:.1f} hours", flush=True)


def method_minutes(tuner, method: str) -> tuple[float, float, float]:
    """Core-minutes of one trial, one finalist run and one final run of ``method`` at its defaults,
    from ``bmil check`` of a final run: its training, then the validation checks and tests each
    stage runs (trials skip the checks the pruner does not read and run fewer episodes, finalists
    those their score does not read; only final runs are tested)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "check.json"
        switch = ["--model", get_method(method).class_path, *tuner.final_run_args]
        done = subprocess.run([sys.executable, "-m", "bmil.cli", "check", *tuner.config_args(), *switch,
                               "--json_out", str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise BMILError(f"the config with {get_method(method).label} does not pass bmil check: {last}")
        facts = json.loads(out.read_text())
    estimate, budgets = facts["estimate"], facts["evaluation"]
    minutes_an_episode = estimate["episode_seconds"] / 60
    validation, test = budgets["validation"], budgets["robustness"].get("final_total", 0)
    training = estimate["core_minutes"] - (validation["total"] + test) * minutes_an_episode
    every = validation["every_n_epochs"]

    def checks_after(epoch: int) -> int:
        return validation["checks"] - epoch // every

    def validating(skipped_epochs: int, episodes: int) -> float:
        return checks_after(skipped_epochs) * episodes * minutes_an_episode

    trial = training + validating(tuner.unpruned_epochs({}), tuner.trial_episodes)
    finalist = training + validating(tuner.unscored_epochs({}), tuner.finalist_episodes)
    final = training + validating(0, validation["episodes"]) + test * minutes_an_episode
    return trial, finalist, final


def runs_done(tuner) -> dict[str, tuple[int, int, int]]:
    """Per method, its trials, finalist runs and final runs already finished in ``out`` (a resumed
    tune)."""
    trials = dict.fromkeys(tuner.methods, 0)
    if (tuner.out / JOURNAL).is_file():
        mend_journal(tuner.out / JOURNAL, repair=False)
        storage = open_storage(tuner.out / JOURNAL)
        for summary in optuna.get_all_study_summaries(storage):
            if summary.study_name in trials:
                finished = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
                trials[summary.study_name] = min(tuner.trials, sum(t.state.is_finished() for t in finished))
    stages = [RunFolder(p.parent).stage() for p in (tuner.out / "runs").glob("*/version_0/result.json")]
    done = {}
    for method in tuner.methods:
        runs = [stage for stage, tags in stages if tags.get("method") == method]
        done[method] = (trials[method], runs.count("finalist"), runs.count("final"))
    return done
