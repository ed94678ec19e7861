"""What every executor does around a run's fit: refuse to mix settings, lock the run's folder,
write its identity, build its ``bmil fit`` command, and read its record once the fit has ended.
The fit writes its own record (``bmil.runs.record``), so every executor gives the same one."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from typing import Callable, Optional

from bmil.demos import default_demo_path, generate_demos
from bmil.errors import BMILError
from bmil.files import read_record, write_text
from bmil.runs.folder import RunFolder
from bmil.runs.record import RunClock, write_identity
from bmil.runs.run import Run


def result_of(out, run: Run) -> dict:
    """A finished run's record."""
    return run.folder(out).result(f"delete it to run {run.run_id} again")


def check_signature(out, run: Run) -> None:
    """Refuse to mix: a finished or interrupted run made with other settings, or an interrupted
    one whose settings are unknown (a checkpoint carried without its signature.json), stays as it is."""
    folder = run.folder(out)
    if folder.last_ckpt.is_file() and not any((folder / name).is_file() for name in (folder.RESULT, folder.IDENTITY)):
        raise BMILError(f"{folder.last_ckpt} has no {folder.IDENTITY} beside its run folder, so the settings it was "
                        f"trained with are unknown and resuming it could mix settings. Copy the run's {folder.IDENTITY} "
                        f"with its checkpoint, or delete {folder} to start the run again.")
    for name in (folder.RESULT, folder.IDENTITY):
        path = folder / name
        if path.is_file():
            found = read_record(path, f"delete {folder}").get("signature")
            if found not in (None, run.signature):
                raise BMILError(
                    f"{path} was made with other settings (what its configs, overrides, --extra or "
                    f"--domain_extra resolve to changed since). Use another --out for these settings, or delete {folder}."
                )


def prepare_demos(runs: list[Run]) -> None:
    """Generate every missing demo set once, before runs start in parallel (no two processes
    write the same dataset)."""
    wanted = set()
    for run in runs:
        init = run.settings["model"]["init_args"]
        demos = init["demos"]
        if not demos["path"]:
            wanted.add((init["env"], demos["num"], demos["seed"], demos["stop_on_success"]))
    for env, num, seed, stop in sorted(wanted):
        if not default_demo_path(env, num, seed, stop).exists():
            generate_demos(env, num, seed, stop_on_success=stop, progress=False)


def lock_run(folder: RunFolder, wait: Optional[Callable[[], bool]] = None) -> Optional[int]:
    """An exclusive lock on the folder's ``run.lock``, or None when another process holds it (with
    ``wait``: once that process lets it go, asking ``wait()`` every half second whether to go on
    waiting). The fit inherits the descriptor, so the lock lasts as long as the fit does, even an
    orphaned one."""
    fd = os.open(folder / folder.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if wait is None or not wait():
                os.close(fd)
                return None
            if not told:
                print(f"waiting for {folder.path}: another process runs its fit ({folder / folder.LOCK} is held)",
                      flush=True)
                told = True
            time.sleep(0.5)
        except OSError:
            os.close(fd)
            raise


def claim(out, run: Run, wait: Optional[Callable[[], bool]] = None) -> int | dict:
    """The run's folder, locked for its fit: the lock's descriptor (the fit inherits it; the caller
    closes it), or the run's result where there is nothing to launch: another process holds the
    lock (with ``wait``: this one waits for it, as ``lock_run``, then finishes the run or reads its
    result), or the run has finished (perhaps by another process while this one waited its turn). A folder made
    with other settings is refused."""
    folder = run.folder(out)
    folder.path.mkdir(parents=True, exist_ok=True)
    lock = lock_run(folder, wait)
    if lock is None:
        return busy(run, folder)
    try:
        check_signature(out, run)  # another sweep, with other settings, may have been first
        if folder.is_done():
            os.close(lock)
            return result_of(out, run)
    except BaseException:
        os.close(lock)
        raise
    return lock


def failure(run: Run, error: str) -> dict:
    """A run that did not finish, as executors report it."""
    return {"run_id": run.run_id, "failed": True, "error": error}


def busy(run: Run, folder: RunFolder) -> dict:
    """The result of a run that another process is running."""
    return failure(run, f"skipped: another process is running it ({folder / folder.LOCK} is held); "
                        "rerun the study when that process has ended")


def before_fit(out, run: Run) -> None:
    """Before launching a run's fit: its settings as the one config it is started with (``run.yaml``),
    its identity for its record, and its clock read (a damaged one stops the run here, before any work)."""
    folder = run.folder(out)
    write_text(folder / folder.SETTINGS, run.settings_yaml())
    write_identity(folder.path, run.signature, run.identity(), run.stage, dict(run.tags))
    RunClock(folder.path, folder.last_ckpt.is_file())


def fit_command(out, run: Run, workers: int = 0, config: Optional[str] = None,
                model_cache: Optional[str] = None) -> list[str]:
    """The run's ``bmil fit``: its settings file (``run.yaml`` in its folder, or ``config``, a copy of
    it where the fit runs), then where it writes, how many worker processes its evaluations use (0,
    in process, while the study runs one fit per core) and where it shares its dynamics models."""
    settings = config or str(run.folder(out) / RunFolder.SETTINGS)
    cmd = [sys.executable, "-m", "bmil.cli", "fit", "--config", settings,
           "--trainer.logger.init_args.save_dir", str(out / "runs"),
           "--trainer.logger.init_args.name", run.run_id,
           "--trainer.logger.init_args.version", "0",
           *(arg for name in ("training_success", "robustness", "validation")
             for arg in (f"--{name}.workers", str(workers)))]
    if model_cache:
        cmd += ["--model_cache", str(model_cache)]
    last = run.folder(out).last_ckpt
    if last.is_file():  # an interrupted run: continue from its last completed epoch
        cmd += ["--ckpt_path", str(last)]
    return cmd


def after_fit(out, run: Run, returncode: int) -> dict:
    """The run's record, once its fit has ended with ``returncode``, or why there is none."""
    folder = run.folder(out)
    log = folder / folder.LOG
    if returncode != 0:
        return failure(run, f"FAILED (exit code {returncode}), see {log}")
    if not folder.is_done():
        return failure(run, f"FAILED (the fit ended without writing {folder / folder.RESULT}), see {log}")
    return result_of(out, run)
