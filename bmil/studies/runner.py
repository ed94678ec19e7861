"""Planning a study's runs: which are done (``result.json``, written by each fit itself), which to
run and in what order, with what ``bmil fit`` command; an executor (``bmil/executors``) runs them.
A finished run is skipped when the study is run again; an interrupted one resumes from its
``last.ckpt``; a stopped study (Ctrl-C, SIGTERM) stops its fits.

A run's signature is a hash of the settings its fit resolves to (LightningCLI's own parse of its
configs, overrides and extra arguments), so a finished run made with other settings is never mixed
into a study, while renaming or re-layering configs with the same settings keeps it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import signal
import sys
import threading
from concurrent.futures import as_completed
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from bmil.errors import BMILError
from bmil.run_record import RESULT, RunClock, read_record, write_identity
from bmil.studies.catalog import Run, Study


def run_dir(out: Path, run: Run) -> Path:
    return out / "runs" / run.run_id / "version_0"


def is_done(out: Path, run: Run) -> bool:
    return (run_dir(out, run) / "result.json").is_file()


def read_result(out: Path, run: Run) -> dict:
    return read_record(run_dir(out, run) / "result.json", f"delete it to run {run.run_id} again")


def signature(run: Run) -> str:
    """What makes a run's result: the settings its fit resolves to, less the names of the config
    files they came from."""
    return _settings_hash(run.settings)


# Settings added to bmil after studies were recorded, at the values that behave as bmil did before
# they existed: left out of signatures there, so the records stay valid (and are never re-run).
_ADDED_SINCE_RECORDS = {
    ("validation",): {"every_n_epochs": 0, "episodes": 200, "seed": 1, "success": "final", "workers": None},
    ("model", "init_args", "policy", "ema_decay"): 0.0,
    ("model", "init_args", "policy", "lr_decay_epochs"): 0,
    ("model", "init_args", "policy", "lr_decay_to"): 0.0,
    ("model", "init_args", "traces", "keep_epochs"): 1,
    ("model", "init_args", "traces", "demo_bounds_margin"): None,
    ("model", "init_args", "demos", "generate"): False,
    ("robustness", "videos"): 0,
}


def _settings_hash(settings: dict) -> str:
    from bmil.lightning_cli import computed_settings

    settings = computed_settings(settings)
    for path, neutral in _ADDED_SINCE_RECORDS.items():
        *parents, key = path
        node = settings
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == neutral:
            del node[key]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _check_signature(out: Path, run: Run, expected: str) -> None:
    """Refuse to mix: a finished or interrupted run made with other settings, or an interrupted
    one whose settings are unknown (a checkpoint carried without its signature.json), stays as it is."""
    folder = run_dir(out, run)
    if (folder / "checkpoints" / "last.ckpt").is_file() and not any(
            (folder / name).is_file() for name in ("result.json", "signature.json")):
        raise BMILError(f"{folder / 'checkpoints' / 'last.ckpt'} has no signature.json beside its run folder, so "
                        "the settings it was trained with are unknown and resuming it could mix settings. Copy "
                        f"the run's signature.json with its checkpoint, or delete {folder} to start the run again.")
    for name in ("result.json", "signature.json"):
        path = folder / name
        if path.is_file():
            found = read_record(path, f"delete {folder}").get("signature")
            if found not in (None, expected):
                raise BMILError(
                    f"{path} was made with other settings (what its configs, overrides, --extra or "
                    f"--domain_extra resolve to changed since). Use another --out for these settings, or delete {folder}."
                )


def _prepare_demos(runs: list[Run]) -> None:
    """Generate every missing demo set once, before runs start in parallel (no two processes
    write the same dataset)."""
    from bmil.demos import default_demo_path, generate_demos

    wanted = set()
    for run in runs:
        init = run.settings["model"]["init_args"]
        demos = init["demos"]
        if not demos["path"]:
            wanted.add((init["env"], demos["num"], demos["seed"], demos["stop_on_success"]))
    for env, num, seed, stop in sorted(wanted):
        if not default_demo_path(env, num, seed, stop).exists():
            generate_demos(env, num, seed, stop_on_success=stop, progress=False)


def fit_command(out: Path, run: Run, workers: int = 0, definition: Optional[list[str]] = None) -> list[str]:
    """The run's ``bmil fit``: its definition (``run.fit_args()``, or ``definition`` that resolves to
    the same settings), then where it writes and how many worker processes its evaluations use (0,
    in process, while the study runs one fit per core)."""
    cmd = [sys.executable, "-m", "bmil.cli", "fit", *(definition or run.fit_args()),
           "--trainer.logger.init_args.save_dir", str(out / "runs"),
           "--trainer.logger.init_args.name", run.run_id,
           "--trainer.logger.init_args.version", "0",
           *(arg for name in ("training_success", "robustness", "validation")
             for arg in (f"--{name}.workers", str(workers)))]
    last = run_dir(out, run) / "checkpoints" / "last.ckpt"
    if last.is_file():  # an interrupted run: continue from its last completed epoch
        cmd += ["--ckpt_path", str(last)]
    return cmd


def _evaluation_workers(jobs: int, runs: int) -> int:
    """Worker processes for each fit's evaluations: 0 (in process) while there is a run for every
    job; with fewer runs than jobs (a study's last run, resumed alone), each fit evaluates over its
    share of the idle cores (outcomes do not depend on the worker count). A run started later from
    the queue always has a run beside it for every other job, so the share is fixed at the start."""
    share = max(1, jobs) // max(1, min(jobs, runs))
    return share if share > 1 else 0


def failure(run: Run, error: str) -> dict:
    """A run that did not finish, as executors report it."""
    return {"run_id": run.run_id, "failed": True, "error": error}


def before_fit(out: Path, run: Run) -> None:
    """What every executor does before launching a run's fit: the run's identity for its record, and
    its clock read (a damaged one stops the run here, before any work)."""
    folder = run_dir(out, run)
    write_identity(folder, signature(run), identity(run))
    RunClock(folder, (folder / "checkpoints" / "last.ckpt").is_file())


def after_fit(out: Path, run: Run, returncode: int) -> dict:
    """The run's record, once its fit has ended with ``returncode``, or why there is none."""
    log = run_dir(out, run) / "fit.log"
    if returncode != 0:
        return failure(run, f"FAILED (exit code {returncode}), see {log}")
    if not is_done(out, run):
        return failure(run, f"FAILED (the fit ended without writing {run_dir(out, run) / RESULT}), see {log}")
    return read_result(out, run)


def identity(run: Run) -> dict:
    """What a study's record says of a run besides its outcomes (``result.json`` repeats it)."""
    record = {k: v for k, v in asdict(run).items() if k != "configs"}
    return {**record, "config": " ".join(run.configs), "overrides": " ".join(run.overrides), "run_id": run.run_id,
            "extra": shlex.join(run.extra)}


def longest_first(runs: list[Run]) -> list[Run]:
    """``runs`` in a cost order (stable otherwise): VINS first (its test-time search of 500 candidates
    per step dominates a run), then the most policy steps per epoch, then runs that learn from
    traces before those that do not (the backwards model, trained every epoch, made maze BMIL runs
    about twice as long as BC's). A long run (Figure 6's 20x BC) started last would run alone at the
    end while the other workers idle."""

    def cost(run: Run) -> tuple:
        model = run.settings["model"]
        method = model["class_path"].rsplit(".", 1)[-1]
        return method == "VINS", model["init_args"]["policy"]["steps_per_epoch"], method == "BMIL"

    return sorted(runs, key=cost, reverse=True)


def run_study(study: Study, out: Path, jobs: int, progress=print,
              methods: Optional[set[str]] = None, reuse: tuple[Path, ...] | list[Path] = (),
              executor: str = "local", ray_address: Optional[str] = None) -> list[dict]:
    """Run every unfinished run of ``study`` (``jobs`` at a time on this machine, or as Ray tasks),
    or of its ``methods`` only, after taking the finished runs of the ``reuse`` folders that match;
    returns their results."""
    for run in study.runs:
        _check_signature(out, run, signature(run))
    taken = [run for run in study.runs if not is_done(out, run) and _take_finished(run, reuse, out)]
    if taken:
        progress(f"{study.name}: took {len(taken)} finished runs made with the same settings from "
                 f"{', '.join(map(str, reuse))}")
    unfinished = [r for r in study.runs if not is_done(out, r)]
    todo = longest_first([r for r in unfinished if methods is None or r.method in methods])
    done, left = len(study.runs) - len(unfinished), len(unfinished) - len(todo)
    at_once = f"{jobs} at a time" if executor == "local" else "as Ray tasks"
    progress(f"{study.name}: {len(study.runs)} runs, {done} already done, running {len(todo)} "
             f"({at_once}){f', leaving {left} of other methods' if left else ''} in {out}")
    _prepare_demos(todo)
    with _sigterm_stops_the_study():
        return _run_parallel(todo, out, jobs, progress, executor, ray_address)


def plan(study: Study, out: Path, methods: Optional[set[str]] = None, sources: tuple[Path, ...] | list[Path] = ()) -> str:
    """The runs to do and those done, per domain and method, with the core-hours the runs to do will
    take, estimated from the recorded times (``seconds`` in ``result.json``) of finished runs of the
    same domain and method here or in ``sources``, else of the same method; nothing runs."""
    import numpy as np

    times: dict = {}
    for folder in (out, *sources):
        for run in study.runs:
            if is_done(folder, run):
                seconds = read_result(folder, run).get("seconds")
                if seconds:
                    times.setdefault((run.domain, run.method), []).append(seconds)
    by_method: dict = {}
    for (_, method), values in times.items():
        by_method.setdefault(method, []).extend(values)
    rows, total, unknown, todo_runs = [], 0.0, 0, 0
    for domain, method in dict.fromkeys((r.domain, r.method) for r in study.runs):
        runs = [r for r in study.runs if (r.domain, r.method) == (domain, method)]
        done = sum(is_done(out, r) for r in runs)
        todo = 0 if methods is not None and method not in methods else len(runs) - done
        recorded = times.get((domain, method)) or by_method.get(method)
        hours = todo * float(np.mean(recorded)) / 3600 if recorded and todo else 0.0
        unknown += todo if not recorded else 0
        total, todo_runs = total + hours, todo_runs + todo
        rows.append(f"| {domain} | {method} | {todo} | {done} | {f'{hours:.2f}' if recorded or not todo else '?'} |")
    head = ["| domain | method | to do | done | core-hours (est.) |", "| --- | --- | --- | --- | --- |"]
    note = f"; {unknown} runs with no recorded time of their method are not counted" if unknown else ""
    return "\n".join([*head, *rows, "", f"{study.name}: {todo_runs} runs to do, about {total:.1f} core-hours from the "
                       f"recorded run times{note}. Nothing was run (--plan)."])


# What a finished run's folder keeps in git (docs/reproducing.md), copied when another study reuses
# it; result.json, which marks the run finished, last.
_RECORDS = ("signature.json", "config.yaml", "run.json", "elapsed.json", "robustness_final.json", "robustness_best.json",
            "validation.json", "result.json")


def _take_finished(run: Run, sources, out: Path) -> bool:
    """Copy ``run``'s records from the first source folder where the same run finished with the
    same settings; whether one did."""
    for source in sources:
        if is_done(source, run) and read_result(source, run).get("signature") == signature(run):
            folder = run_dir(out, run)
            folder.mkdir(parents=True, exist_ok=True)
            for name in _RECORDS:
                if (run_dir(source, run) / name).is_file():
                    shutil.copy2(run_dir(source, run) / name, folder / name)
            return True
    return False


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def _sigterm_stops_the_study():
    """SIGTERM (``kill``) raises SystemExit as Ctrl-C raises KeyboardInterrupt, so both stop the
    study's fits. Python runs signal handlers in the main thread only; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = (signal.getsignal(signal.SIGINT), signal.signal(signal.SIGTERM, _raise_on_sigterm))
    try:
        yield
    finally:
        for signum, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
            if handler is not None:  # None: a handler set from C, which cannot be put back
                signal.signal(signum, handler)


def _status(result: dict) -> str:
    """A finished run in a few words: its test robustness, or its validation score where it skipped the test."""
    if result.get("failed"):
        return result["error"]
    if result["robustness"] is not None:
        return f"robustness {100 * result['robustness']:.1f}% in {result['seconds']:.0f} s"
    return f"validation score {100 * result.get('validation_late', math.nan):.1f}% in {result['seconds']:.0f} s"


def _run_parallel(todo: list[Run], out: Path, jobs: int, progress, kind: str = "local",
                  ray_address: Optional[str] = None) -> list[dict]:
    from bmil.executors import make_executor

    results = []
    try:
        with make_executor(kind, jobs, ray_address, _evaluation_workers(jobs, len(todo))) as executor:
            for future in as_completed([executor.submit(out, r) for r in todo]):  # in the order they end
                result = future.result()
                progress(f"  {result['run_id']}: {_status(result)}")
                results.append(result)
    except BaseException:
        finished = sum(not r.get("failed") for r in results)
        progress(f"stopped; {finished} runs finished in this invocation. Rerun the same command "
                 "to continue: unfinished runs resume from their last checkpoint.")
        raise
    return results
