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

import json
import os
import subprocess
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import yaml

from bmil.demo_formats import MINARI_PREFIX
from bmil.demos import default_demo_path
from bmil.executors import Executor, join_ray
from bmil.executors.local import busy, lock_run
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


def _tree(path: Path, name: str) -> dict[str, bytes]:
    """The file ``path``, or every file under the folder ``path``, as ``name/...``: bytes."""
    if path.is_file():
        return {name: path.read_bytes()}
    return {f"{name}/{f.relative_to(path)}": f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def run_inputs(run: Run) -> tuple[str, dict[str, bytes]]:
    """What a run's fit reads on the driver's machine, for a node that shares no folder with it: its
    settings resolved into one config (so the config files it was given need not be there), and its
    demonstrations (bmil's own set, a dataset file or folder, or a Minari dataset by id), as files
    relative to the folder the fit starts in (a Minari dataset under ``minari/``)."""
    settings = json.loads(json.dumps(run.settings))
    for key in ("config", "ckpt_path"):  # the files it came from; where it resumes is the task's
        settings.pop(key, None)
    demos = settings["model"]["init_args"]["demos"]
    source = demos["path"]
    if not source:  # the fit looks for bmil's own set at this relative path
        path = default_demo_path(settings["model"]["init_args"]["env"], demos["num"], demos["seed"],
                                 demos["stop_on_success"])
        files = _tree(path, str(path)) if path.exists() else {}
    elif str(source).startswith(MINARI_PREFIX):
        dataset = str(source)[len(MINARI_PREFIX):]
        root = Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()
        files = _tree(root / dataset, f"minari/{dataset}") if (root / dataset).is_dir() else {}
    else:
        path = Path(source)
        demos["path"] = f"demo_input/{path.name}"
        files = _tree(path, demos["path"]) if path.exists() else {}
    return yaml.safe_dump(settings, sort_keys=False), files


def fit_task(files, folder: str, run: Run, workers: int, push_every_s: float, config: str, inputs) -> int:
    """One run's ``bmil fit`` on this node, from its resolved ``config`` and ``inputs`` (``run_inputs``);
    its exit status. Its files go back to the driver as they change."""
    import ray

    from bmil.evaluation import _die_with_parent

    with tempfile.TemporaryDirectory(prefix="bmil-run-") as tmp:
        out = Path(tmp)
        local = run_dir(out, run)
        local.mkdir(parents=True)
        start = out / "inputs"  # the fit starts here: relative paths in its settings resolve here
        _write_files(start, {**inputs, "run.yaml": config.encode()})
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if (start / "minari").is_dir():
            env["MINARI_DATASETS_PATH"] = str(start / "minari")
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
            proc = subprocess.Popen(runner.fit_command(out, run, workers, ["--config", "run.yaml"]), cwd=start,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
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
        self.inputs: dict = {}  # the demonstrations put in Ray's object store, by their file names
        self.lock = threading.Lock()

    def submit(self, out: Path, run: Run) -> Future:
        folder = run_dir(out, run)
        folder.mkdir(parents=True, exist_ok=True)
        done: Future = Future()
        # The driver holds the run's folder lock while its task runs: a second driver (or a local
        # sweep) on the same study folder skips the run instead of writing it twice.
        lock = lock_run(folder)
        if lock is None:
            done.set_result(busy(run, folder))
            return done
        try:
            _check_signature(out, run, signature(run))  # (the settings resolved here, in the calling thread)
            if is_done(out, run):
                done.set_result(read_result(out, run))
                os.close(lock)
                return done
            runner.before_fit(out, run)
        except BaseException:
            os.close(lock)
            raise
        config, inputs = run_inputs(run)
        key = json.dumps(sorted(inputs))  # the same demonstrations go to the cluster once
        if key not in self.inputs:
            self.inputs[key] = self.ray.put(inputs)
        ref = self.task.remote(self.files, str(folder.resolve()), run, 0, self.push_every_s, config,
                               self.inputs[key])  # one CPU: evaluations in process
        with self.lock:
            self.refs[ref] = run
        return self.pool.submit(self._collect, out, run, ref, lock)

    def _collect(self, out: Path, run: Run, ref, lock: int) -> dict:
        try:
            try:
                returncode = self.ray.get(ref)
            except Exception as e:  # the task failed past its retries, or was cancelled
                return failure(run, f"FAILED on Ray ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            finally:
                with self.lock:
                    self.refs.pop(ref, None)
            return runner.after_fit(out, run, returncode)
        finally:
            os.close(lock)

    def stop(self) -> None:
        """Cancel every task still running; their runs resume from the checkpoints already pushed."""
        with self.lock:
            refs = list(self.refs)
        for ref in refs:
            self.ray.cancel(ref, force=True)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown()
