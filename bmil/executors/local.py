"""The local executor: each run a ``bmil fit`` process on this machine, ``jobs`` at a time, one
torch thread each (the default; no server). A run's folder is locked while its fit runs (the fit
itself holds the lock), so a second sweep never starts a run that another one, or an orphaned fit of
a killed sweep, is still writing; stopping the executor (Ctrl-C, SIGTERM) stops its fits, which
resume from ``last.ckpt`` next time. The fit writes its own record (``bmil.runs.record``); the
executor only launches it and reads the record back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from bmil.executors.base import Executor
from bmil.runs import launch
from bmil.runs.folder import RunFolder
from bmil.runs.launch import claim, failure
from bmil.runs.run import Run
from bmil.system import die_with_parent


class _Fits:
    """The ``bmil fit`` processes of one ``run_study`` call, so that stopping the study stops them,
    and the evaluation workers each gets."""

    def __init__(self, evaluation_workers: int = 0, die_with_driver: bool = False,
                 model_cache: Optional[Path] = None):
        # Where fits start: jsonargparse changes the process's working folder while it reads config
        # files, and a fit started by another thread meanwhile would inherit that folder.
        self.cwd = os.getcwd()
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False  # once set, no new fit starts
        self.evaluation_workers = evaluation_workers
        # A tune's fits end with their driver, even one killed by SIGKILL (a rerun would find their
        # runs locked); a study's fits live on, each resumable on its own.
        self.preexec = die_with_parent if die_with_driver else None
        # ... and a tune waits for a fit that another (dying) driver still runs, then finishes it.
        self.wait_for_busy = die_with_driver
        self.model_cache = model_cache  # where the fits share their dynamics models (bmil fit --model_cache)

    def start(self, cmd: list[str], **popen) -> Optional[subprocess.Popen]:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, cwd=self.cwd, preexec_fn=self.preexec, **popen)
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
        return failure(run, f"FAILED ({e}), see {run.folder(out) / RunFolder.LOG}")


def _execute(out: Path, run: Run, fits: _Fits) -> dict:
    lock = claim(out, run, wait=(lambda: not fits.stopping) if fits.wait_for_busy else None)
    if isinstance(lock, dict):  # busy elsewhere, or finished
        return lock
    try:
        return _fit(out, run, run.folder(out), lock, fits)
    finally:
        os.close(lock)


def _fit(out: Path, run: Run, folder: RunFolder, lock: int, fits: _Fits) -> dict:
    """Launch the run's fit and read the record it writes when it ends (``bmil.runs.record``)."""
    launch.before_fit(out, run)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(folder / folder.LOG, "a") as log:
        proc = fits.start(launch.fit_command(out, run, fits.evaluation_workers, model_cache=fits.model_cache),
                          stdout=log, stderr=subprocess.STDOUT,
                          env=env, pass_fds=(lock,))
        if proc is None:
            return failure(run, "not started: the study was stopped")
        try:
            returncode = proc.wait()
        finally:
            fits.ended(proc)
    return launch.after_fit(out, run, returncode)


class LocalExecutor(Executor):
    """The executor seam of every study (``bmil reproduce``, ``bmil tune``): runs fits, ``jobs`` at a
    time, each a ``bmil fit`` process on this machine (``execute``); ``submit`` returns a future of
    the run's result. ``stop`` ends the running fits (they resume from their checkpoints)."""

    def __init__(self, jobs: int, evaluation_workers: int = 0, die_with_driver: bool = False,
                 model_cache: Optional[Path] = None):
        self.pool = ThreadPoolExecutor(max(1, jobs))  # threads only wait on the fit processes
        self.fits = _Fits(evaluation_workers, die_with_driver, model_cache)

    def submit(self, out: Path, run: Run) -> Future:
        run.signature  # the settings are resolved here, by the thread that parses (jsonargparse is not thread-safe)
        return self.pool.submit(execute, out, run, self.fits)

    def stop(self) -> None:
        held = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
                held[signum] = signal.signal(signum, signal.SIG_IGN)
        try:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.fits.stop()
        finally:
            for signum, handler in held.items():  # the caller's handlers back (a test process goes on)
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def close(self) -> None:
        self.pool.shutdown()
