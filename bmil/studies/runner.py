"""Running a study: each run a separate ``bmil fit`` process, several at once (small runs: parallel
seeds beat one big run), one torch thread and in-process evaluation each. A finished run leaves
``result.json`` in its folder and is skipped when the study is run again; an interrupted run
resumes from its ``last.ckpt``. A run's folder is locked while its fit runs (the fit itself holds
the lock), so a second sweep never starts a run that another one, or an orphaned fit of a killed
sweep, is still writing; and a sweep that is stopped (Ctrl-C, SIGTERM) stops its fits, which
resume from ``last.ckpt`` next time.

A run's signature is a hash of the settings its fit resolves to (LightningCLI's own parse of its
configs, overrides and extra arguments), so a finished run made with other settings is never mixed
into a study, while renaming or re-layering configs with the same settings keeps it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from bmil.errors import BMILError
from bmil.evaluation import write_record
from bmil.studies.catalog import Run, Study


def run_dir(out: Path, run: Run) -> Path:
    return out / "runs" / run.run_id / "version_0"


def is_done(out: Path, run: Run) -> bool:
    return (run_dir(out, run) / "result.json").is_file()


def read_result(out: Path, run: Run) -> dict:
    return _read_record(run_dir(out, run) / "result.json", f"delete it to run {run.run_id} again")


def _read_record(path: Path, fix: str) -> dict:
    """A JSON record of a run folder, or one clear error naming the file and ``fix``."""
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            return record
        problem = f"a {type(record).__name__}, not a JSON object"
    except ValueError as e:
        problem = f"{type(e).__name__}: {e}"
    raise _damaged(path, problem, fix)


def _damaged(path: Path, problem: str, fix: str) -> BMILError:
    """The one message for a damaged run-folder record: the file, what is wrong, how to mend it."""
    return BMILError(f"{path} is damaged ({problem}); restore it (git checkout) or {fix}")


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
            found = _read_record(path, f"delete {folder}").get("signature")
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


def _command(out: Path, run: Run, workers: int = 0) -> list[str]:
    """The run's ``bmil fit``: its definition, then where it writes and how many worker processes
    its evaluations use (0, in process, while the study runs one fit per core)."""
    cmd = [sys.executable, "-m", "bmil.cli", "fit", *run.fit_args(),
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


class _Fits:
    """The ``bmil fit`` processes of one ``run_study`` call, so that stopping the study stops them,
    and the evaluation workers each gets."""

    def __init__(self, evaluation_workers: int = 0):
        # Where fits start: jsonargparse changes the process's working folder while it reads config
        # files, and a fit started by another thread meanwhile would inherit that folder.
        self.cwd = os.getcwd()
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False  # once set, no new fit starts
        self.evaluation_workers = evaluation_workers

    def start(self, cmd: list[str], **popen) -> Optional[subprocess.Popen]:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, cwd=self.cwd, **popen)
            self.live.add(proc)
            return proc

    def ended(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.live.discard(proc)

    def stop(self) -> None:
        """Terminate every fit still running (each resumes from its last.ckpt when the study reruns)."""
        with self.lock:
            self.stopping = True
            procs = list(self.live)
        for proc in procs:
            proc.terminate()  # Lightning stops at the next batch; a long evaluation gets killed below
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # safe: checkpoints are written whole, once per epoch
                proc.wait()


def execute(out: Path, run: Run, fits: _Fits) -> dict:
    """Run one ``bmil fit`` to the end and record its result (``result.json``, atomically); a
    failure (of the fit or of reading its results), a run busy in another process or one not
    started because the study stopped is returned as ``{"failed": True, "error": <message>}``."""
    try:
        return _execute(out, run, fits)
    except Exception as e:  # one broken run must not stop the study or its report
        return _failed(run, f"FAILED ({e}), see {run_dir(out, run) / 'fit.log'}")


def _failed(run: Run, error: str) -> dict:
    return {"run_id": run.run_id, "failed": True, "error": error}


def _lock_run(folder: Path) -> Optional[int]:
    """An exclusive lock on ``folder/run.lock``, or None when another process holds it. The fit
    inherits the descriptor, so the lock lasts as long as the fit does, even an orphaned one."""
    fd = os.open(folder / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _execute(out: Path, run: Run, fits: _Fits) -> dict:
    folder = run_dir(out, run)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock_run(folder)
    if lock is None:
        return _failed(run, f"skipped: another process is running it ({folder / 'run.lock'} is held); "
                            "rerun the study when that process has ended")
    try:
        _check_signature(out, run, signature(run))  # another sweep, with other settings, may have been first
        if is_done(out, run):  # finished by another process while this one waited its turn
            return read_result(out, run)
        return _fit(out, run, folder, lock, fits)
    finally:
        os.close(lock)


def _fit(out: Path, run: Run, folder: Path, lock: int, fits: _Fits) -> dict:
    sig = signature(run)
    write_record(folder / "signature.json", {"signature": sig}, indent=1)
    resumed = (folder / "checkpoints" / "last.ckpt").is_file()
    clock = _RunClock(folder / "elapsed.json", resumed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(folder / "fit.log", "a") as log:
        proc = fits.start(_command(out, run, fits.evaluation_workers), stdout=log, stderr=subprocess.STDOUT,
                          env=env, pass_fds=(lock,))
        if proc is None:
            return _failed(run, "not started: the study was stopped")
        try:
            returncode = clock.wait(proc)
        finally:
            fits.ended(proc)
    seconds = clock.seconds
    if returncode != 0:
        return _failed(run, f"FAILED (exit code {returncode}), see {folder / 'fit.log'}")
    record = {k: v for k, v in asdict(run).items() if k != "configs"}
    result = {**record, "config": " ".join(run.configs), "overrides": " ".join(run.overrides), "run_id": run.run_id,
              **_test_result(folder), "training_success": _last_scalar(folder, "eval/training_success"),
              "seconds": seconds, "resumed": resumed, "extra": shlex.join(run.extra), "signature": sig,
              **_validation_result(folder), "numerics": _numerics(folder)}
    write_record(folder / "result.json", result, indent=1)
    return result


def _test_result(folder: Path) -> dict:
    """The final test of the last policy; None where the run skipped it (the settings search,
    ``robustness.final_episodes 0``, never touches the test starts)."""
    path = folder / "robustness_final.json"
    if not path.is_file():
        return {"robustness": None, "robustness_ci_low": None, "robustness_ci_high": None, "episodes": 0}
    final = json.loads(path.read_text())
    return {"robustness": final["success_rate"], "robustness_ci_low": final["ci95"][0],
            "robustness_ci_high": final["ci95"][1], "episodes": final["episodes"], **_flag_rates(final)}


def _validation_result(folder: Path) -> dict:
    """What the run's validation gave, where it validated: ``validation_late``, the mean validation
    robustness over the checks in the second half of training (the settings search's score: a run's
    typical level late in training, which neither one lucky check nor one collapse decides); and the
    test of the policy chosen on validation starts, where the run kept one."""
    path = folder / "validation.json"
    if not path.is_file():
        return {}
    validation = json.loads(path.read_text())
    history, result = validation["history"], {}
    if history:
        late = [h["rate"] for h in history if h["epoch"] > history[-1]["epoch"] / 2]
        result.update(validation_late=sum(late) / len(late), validation_checks=len(late))
    best_path = folder / "robustness_best.json"
    if best_path.is_file():
        best = json.loads(best_path.read_text())
        result.update(best_robustness=best["success_rate"], best_robustness_ci_low=best["ci95"][0],
                      best_robustness_ci_high=best["ci95"][1], best_epoch=validation["best_epoch"],
                      best_validation=validation["best_rate"])
    return result


def _numerics(folder: Path) -> Optional[dict]:
    """What the run's digits depend on (its last start's CPU, kernels and numeric pins: run.json)."""
    path = folder / "run.json"
    return _read_record(path, f"delete {folder} to run it again")["starts"][-1]["numerics"] if path.is_file() else None


def _flag_rates(final: dict) -> dict:
    """The share of the final test's episodes that ended with each of the domain's flags
    (``flag_flipped`` for the ant)."""
    return {f"flag_{name}": count / final["episodes"] for name, count in final.get("flags", {}).items()}


class _RunClock:
    """A run's wall time over every invocation of its fit, kept in ``elapsed.json`` in the run
    folder. A run resumed from its ``last.ckpt`` in a later sweep (the one before stopped or killed
    with its machine) thus reports all the time it took, not only its last part: the file is
    rewritten every ``_CLOCK_EVERY_S`` seconds while the fit runs, so a kill loses at most that
    much. A run starting afresh (no checkpoint) starts its clock at zero."""

    def __init__(self, path: Path, resumed: bool):
        self.path = path
        self.before = self._read(path) if resumed and path.is_file() else 0.0
        self.t0 = time.perf_counter()
        self.seconds = self.before  # as last written

    @staticmethod
    def _read(path: Path) -> float:
        fix = "delete it, which resumes the run with its clock at zero, so its 'seconds' undercount"
        seconds = _read_record(path, fix).get("seconds")
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if number and math.isfinite(seconds) and seconds >= 0:
            return float(seconds)
        raise _damaged(path, f"'seconds' is {seconds!r}, not a number of seconds", fix)

    def wait(self, proc: subprocess.Popen) -> int:
        while True:
            try:
                returncode = proc.wait(timeout=_CLOCK_EVERY_S)
            except subprocess.TimeoutExpired:
                returncode = None
            self.seconds = self.before + time.perf_counter() - self.t0
            write_record(self.path, {"seconds": self.seconds}, indent=1)
            if returncode is not None:
                return returncode


_CLOCK_EVERY_S = 60.0


def _last_scalar(folder: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    if tag not in events.Tags()["scalars"]:
        return math.nan
    return float(events.Scalars(tag)[-1].value)


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
              methods: Optional[set[str]] = None, reuse: tuple[Path, ...] | list[Path] = ()) -> list[dict]:
    """Run every unfinished run of ``study`` (``jobs`` at a time), or of its ``methods`` only,
    after taking the finished runs of the ``reuse`` folders that match; returns their results."""
    for run in study.runs:
        _check_signature(out, run, signature(run))
    taken = [run for run in study.runs if not is_done(out, run) and _take_finished(run, reuse, out)]
    if taken:
        progress(f"{study.name}: took {len(taken)} finished runs made with the same settings from "
                 f"{', '.join(map(str, reuse))}")
    unfinished = [r for r in study.runs if not is_done(out, r)]
    todo = longest_first([r for r in unfinished if methods is None or r.method in methods])
    done, left = len(study.runs) - len(unfinished), len(unfinished) - len(todo)
    progress(f"{study.name}: {len(study.runs)} runs, {done} already done, running {len(todo)} "
             f"({jobs} at a time){f', leaving {left} of other methods' if left else ''} in {out}")
    _prepare_demos(todo)
    with _sigterm_stops_the_study():
        return _run_parallel(todo, out, jobs, progress)


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


class LocalExecutor:
    """The executor seam of every study (``bmil reproduce``, ``bmil tune``): runs fits, ``jobs`` at a
    time, each a ``bmil fit`` process on this machine (``execute``); ``submit`` returns a future of
    the run's result. ``stop`` ends the running fits (they resume from their checkpoints)."""

    def __init__(self, jobs: int, evaluation_workers: int = 0):
        self.pool = ThreadPoolExecutor(max(1, jobs))  # threads only wait on the fit processes
        self.fits = _Fits(evaluation_workers)

    def submit(self, out: Path, run: Run) -> Future:
        signature(run)  # the settings are resolved here, by the thread that parses (jsonargparse is not thread-safe)
        return self.pool.submit(execute, out, run, self.fits)

    @staticmethod
    def wait_any(futures) -> Future:
        return next(as_completed(futures))

    def stop(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up short
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.fits.stop()

    def close(self) -> None:
        self.pool.shutdown()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:  # Ctrl-C, SIGTERM or a failure: stop the fits, not only this process
            self.stop()
        self.close()


def _run_parallel(todo: list[Run], out: Path, jobs: int, progress) -> list[dict]:
    results = []
    try:
        with LocalExecutor(jobs, _evaluation_workers(jobs, len(todo))) as executor:
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
