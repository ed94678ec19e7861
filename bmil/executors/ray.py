"""The Ray executor (``--executor ray``; ``pip install 'bmil[ray]'``): each fit a Ray task of one CPU
on any node of a cluster, with no shared filesystem.

The study folder stays on the driver's machine. A task pulls its run's files from there (the
identity the driver wrote, and the checkpoint of an earlier part, if any), runs ``bmil fit`` in a
temporary folder on its node, and pushes the files that changed back every ``push_every_s``
seconds and at the end, through an actor on the driver's node (``RunFiles``) that writes them
atomically. When a node is lost, Ray runs the task again elsewhere (``retries``); it resumes from
the last checkpoint the driver holds, or starts again where none came back. The fit writes its own
record (``result.json``), pushed last, so a run's record is the local executor's, bit for bit, at
the same thread pins. Ctrl-C on the driver cancels the tasks and leaves the runs resumable.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from bmil.executors import Executor, join_ray
from bmil.run_record import RESULT
from bmil.studies import runner
from bmil.studies.catalog import Run
from bmil.studies.runner import _check_signature, failure, is_done, read_result, run_dir, signature

PUSH_EVERY_S = 30.0  # how often a running fit's changed files go back to the driver
# Files that belong to the machine a fit runs on, not to the run.
_LOCAL_ONLY = ("run.lock", "pid")


def _changed(folder: Path, seen: dict) -> dict[str, bytes]:
    """The files under ``folder`` whose size or time changed since ``seen`` (updated), as bytes."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _LOCAL_ONLY):
        stat = path.stat()
        key = str(path.relative_to(folder))
        if seen.get(key) != (stat.st_mtime_ns, stat.st_size):
            try:
                files[key] = path.read_bytes()
            except FileNotFoundError:  # replaced meanwhile: the next push takes the new one
                continue
            seen[key] = (stat.st_mtime_ns, stat.st_size)
    return files


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    """``files`` (relative path: bytes) into ``folder``, each atomically, the record last."""
    for name in sorted(files, key=lambda n: n == RESULT):  # the record marks the run finished
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.push")
        tmp.write_bytes(files[name])
        os.replace(tmp, path)


class RunFiles:
    """On the driver's node: the run folders of a study, read for tasks and written for them."""

    def pull(self, folder: str) -> dict[str, bytes]:
        return _changed(Path(folder), {}) if Path(folder).is_dir() else {}

    def push(self, folder: str, files: dict[str, bytes]) -> None:
        _write_files(Path(folder), files)


def fit_task(files, folder: str, run: Run, workers: int, push_every_s: float) -> int:
    """One run's ``bmil fit`` on this node; its exit status. Its files go back to the driver as they change."""
    import ray

    from bmil.evaluation import _die_with_parent

    with tempfile.TemporaryDirectory(prefix="bmil-run-") as tmp:
        out = Path(tmp)
        local = run_dir(out, run)
        local.mkdir(parents=True)
        _write_files(local, ray.get(files.pull.remote(folder)))  # what the driver holds
        seen: dict = {}
        _changed(local, seen)
        if (local / RESULT).is_file():  # finished before this attempt (its task's reply was lost)
            return 0
        stop = threading.Event()

        def push_changes() -> None:
            while not stop.wait(push_every_s):
                ray.get(files.push.remote(folder, _changed(local, seen)))

        pusher = threading.Thread(target=push_changes, daemon=True)
        with open(local / "fit.log", "a") as log:
            proc = subprocess.Popen(runner.fit_command(out, run, workers), stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_die_with_parent)
            pusher.start()
            try:
                returncode = proc.wait()
            finally:
                stop.set()
                pusher.join()
                if proc.poll() is None:  # cancelled: stop the fit, which the next attempt resumes
                    proc.terminate()
                    proc.wait()
        ray.get(files.push.remote(folder, _changed(local, seen)))
        return returncode


class RayExecutor(Executor):
    """Fits as Ray tasks (``address``: "auto", "HOST:PORT", or None to join ``RAY_ADDRESS`` or start a
    local instance); ``submit`` returns a future of the run's result, as ``LocalExecutor``'s does."""

    def __init__(self, address: Optional[str] = None, retries: int = 3, push_every_s: Optional[float] = None):
        ray = self.ray = join_ray(address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.files = ray.remote(RunFiles).options(num_cpus=0, scheduling_strategy=here).remote()
        self.task = ray.remote(fit_task).options(num_cpus=1, max_retries=retries)
        self.push_every_s = push_every_s or PUSH_EVERY_S
        self.pool = ThreadPoolExecutor(64)  # threads only wait on the tasks
        self.refs: dict = {}
        self.lock = threading.Lock()

    def submit(self, out: Path, run: Run) -> Future:
        folder = run_dir(out, run)
        folder.mkdir(parents=True, exist_ok=True)
        _check_signature(out, run, signature(run))  # (the settings resolved here, in the calling thread)
        if is_done(out, run):
            done: Future = Future()
            done.set_result(read_result(out, run))
            return done
        runner.before_fit(out, run)
        ref = self.task.remote(self.files, str(folder.resolve()), run, 0, self.push_every_s)  # one CPU: evaluations in process
        with self.lock:
            self.refs[ref] = run
        return self.pool.submit(self._collect, out, run, ref)

    def _collect(self, out: Path, run: Run, ref) -> dict:
        try:
            returncode = self.ray.get(ref)
        except Exception as e:  # the task failed past its retries, or was cancelled
            return failure(run, f"FAILED on Ray ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        finally:
            with self.lock:
                self.refs.pop(ref, None)
        return runner.after_fit(out, run, returncode)

    def stop(self) -> None:
        """Cancel every task still running; their runs resume from the checkpoints already pushed."""
        with self.lock:
            refs = list(self.refs)
        for ref in refs:
            self.ray.cancel(ref, force=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown()
