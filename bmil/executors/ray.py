"""The Ray executor (``--executor ray``; ``pip install 'bmil[ray]'``): each fit a Ray task of one CPU
on any node of a cluster, with no shared filesystem.

The study folder stays on the driver's machine. A task gets its run's settings resolved into one
config and its demonstrations (``run_inputs``), pulls its run's files from the driver (the identity
the driver wrote, and the checkpoint of an earlier part, if any), runs ``bmil fit`` in a temporary
folder on its node, and pushes the files that changed back every ``push_every_s``
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

import yaml

from bmil.cluster import join_ray
from bmil.demo_formats import MINARI_PREFIX, minari_root
from bmil.demos import default_demo_path
from bmil.errors import BMILError
from bmil.executors.base import Executor
from bmil.files import write_bytes
from bmil.runs.folder import RunFolder
from bmil.runs.launch import after_fit, before_fit, claim, failure, fit_command
from bmil.runs.run import Run
from bmil.system import die_with_parent

PUSH_EVERY_S = 30.0  # how often a running fit's changed files go back to the driver
# Files that belong to the machine a fit runs on, not to the run.
_LOCAL_ONLY = (RunFolder.LOCK, "pid")


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
    for name in sorted(files, key=lambda n: n == RunFolder.RESULT):  # the record marks the run finished
        write_bytes(folder / name, files[name])


class RunFiles:
    """On the driver's node: the run folders of a study, read for tasks and written for them."""

    def pull(self, folder: str) -> dict[str, bytes]:
        return _changed(Path(folder), {}) if Path(folder).is_dir() else {}

    def push(self, folder: str, files: dict[str, bytes]) -> None:
        _write_files(Path(folder), files)


def run_inputs(settings_file: str) -> tuple[str, Optional[Path], str]:
    """What a run's fit reads on the driver's machine, for a node that shares no folder with it: its
    settings file (``run.yaml``: the config files it was made from need not be there), and
    where its demonstrations are here (bmil's own set, a dataset file or folder, or a Minari dataset
    by id; None: none to send) with the name they take in the folder the fit starts in. A relative
    ``model.demos.path`` keeps its name, so the run's settings stay the same on the node; an
    absolute one becomes ``demo_input/<name>``."""
    from bmil.domains import get_domain

    settings = yaml.safe_load(settings_file)
    init = settings["model"]["init_args"]
    demos, source = init["demos"], init["demos"]["path"]
    if not source:  # bmil's own set, where the fit looks for it (generated there if missing, as here)
        path = default_demo_path(get_domain(init["env"]).name, demos["num"], demos["seed"], demos["stop_on_success"])
        name = str(path)
        path = path if path.exists() else None
    elif str(source).startswith(MINARI_PREFIX):
        dataset = str(source)[len(MINARI_PREFIX):]
        root = minari_root()
        path, name = root / dataset, f"minari/{dataset}"
        if not path.is_dir():
            raise BMILError(f"Minari dataset '{source}' not found under MINARI_DATASETS_PATH ({root}) on this "
                            "machine, from which it goes to the cluster.")
    else:
        given = Path(source)
        path = given.resolve()
        if not path.exists():
            raise BMILError(f"model.demos.path {source}: not found on this machine, from which it goes to the cluster.")
        if given.is_absolute() or ".." in given.parts:
            name = demos["path"] = f"demo_input/{path.name}"
        else:
            name = str(given)
    return yaml.safe_dump(settings, sort_keys=False), path, name


def fit_task(files, folder: str, run: Run, workers: int, push_every_s: float, config: str, inputs) -> int:
    """One run's ``bmil fit`` on this node, from its resolved ``config`` and ``inputs`` (``run_inputs``);
    its exit status. Its files go back to the driver as they change."""
    import ray

    with tempfile.TemporaryDirectory(prefix="bmil-run-") as tmp:
        out = Path(tmp)
        local = run.folder(out).path
        local.mkdir(parents=True)
        start = out / "inputs"  # the fit starts here: relative paths in its settings resolve here
        _write_files(start, {**(inputs or {}), "run.yaml": config.encode()})
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if (start / "minari").is_dir():
            env["MINARI_DATASETS_PATH"] = str(start / "minari")
        _write_files(local, ray.get(files.pull.remote(folder)))  # what the driver holds
        seen: dict = {}
        _changed(local, seen)
        if (local / RunFolder.RESULT).is_file():  # finished before this attempt (its task's reply was lost)
            return 0
        stop = threading.Event()

        def push_changes() -> None:
            while not stop.wait(push_every_s):
                ray.get(files.push.remote(folder, _changed(local, seen)))

        pusher = threading.Thread(target=push_changes, daemon=True)
        with open(local / RunFolder.LOG, "a") as log:
            proc = subprocess.Popen(fit_command(out, run, workers, config="run.yaml"), cwd=start,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
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
        self.running: dict = {}  # per task out: (its run folder's lock, the future that reads its result)
        self.inputs: dict = {}  # the demonstrations put in Ray's object store
        self.lock = threading.Lock()

    def submit(self, out: Path, run: Run) -> Future:
        folder = run.folder(out)
        # The driver holds the run's folder lock from here until its result is read: a second driver
        # (or a local sweep) on the same study folder skips the run instead of writing it twice.
        lock = claim(out, run)  # (the settings resolved here, in the calling thread)
        if isinstance(lock, dict):  # busy elsewhere, or finished
            done: Future = Future()
            done.set_result(lock)
            return done
        ref = None
        try:
            before_fit(out, run)
            config, path, name = run_inputs((folder / folder.SETTINGS).read_text())
            demos = self._demos(path, name) if path else None
            ref = self.task.remote(self.files, str(folder.path.resolve()), run, 0, self.push_every_s, config,
                                   demos)  # one CPU: evaluations in process
            with self.lock:  # (held until the entry is in: _collect's release waits for it)
                future = self.pool.submit(self._collect, out, run, ref)
                self.running[ref] = (lock, future)
            return future
        except BaseException:  # (Ctrl-C too) no task left behind, no lock held
            if ref is not None:
                self.ray.cancel(ref, force=True)
            with self.lock:
                self.running.pop(ref, None)
            os.close(lock)
            raise

    def _demos(self, path: Path, name: str):
        """The demonstration files in Ray's object store, put once for all the runs that read them
        (known by where they are, their names and their files' sizes and times)."""
        files = {name: path} if path.is_file() else {
            f"{name}/{f.relative_to(path)}": f for f in sorted(path.rglob("*")) if f.is_file()}
        key = (str(path), tuple((n, f.stat().st_mtime_ns, f.stat().st_size) for n, f in files.items()))
        if key not in self.inputs:
            self.inputs[key] = self.ray.put({n: f.read_bytes() for n, f in files.items()})
        return self.inputs[key]

    def _collect(self, out: Path, run: Run, ref) -> dict:
        try:
            try:
                returncode = self.ray.get(ref)
            except Exception as e:  # the task failed past its retries, or was cancelled
                return failure(run, f"FAILED on Ray ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            return after_fit(out, run, returncode)
        finally:
            self._release(ref)

    def _release(self, ref) -> None:
        """The run's folder lock, closed once, when its result is read or will never be."""
        with self.lock:
            entry = self.running.pop(ref, None)
        if entry is not None:
            os.close(entry[0])

    def stop(self) -> None:
        """Cancel every task still running; their runs resume from the checkpoints already pushed."""
        with self.lock:
            running = dict(self.running)
        for ref in running:
            self.ray.cancel(ref, force=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        for ref, (_, future) in running.items():
            if future.cancelled():  # its result is never read: its lock is released here
                self._release(ref)

    def close(self) -> None:
        self.pool.shutdown()
