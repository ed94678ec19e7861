"""Executors: how a study's or a tune's fits run, behind one seam (``submit`` a run, get a future of
its result; ``wait_any``; ``stop``; a context manager). ``local`` (the default): processes on this
machine, no server. ``ray``: tasks on a Ray cluster (``bmil/executors/ray.py``)."""

from __future__ import annotations

from concurrent.futures import as_completed
from typing import Optional

from bmil.errors import BMILError

EXECUTORS = ("local", "ray")


class Executor:
    """The seam: ``submit(out, run)`` returns a future of the run's result; ``stop`` ends what runs
    (the runs resume from their checkpoints); ``close`` waits for the rest. As a context manager it
    stops on an error (Ctrl-C, SIGTERM, a failure) and closes always."""

    def submit(self, out, run):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def wait_any(futures):
        return next(as_completed(futures))

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:
            self.stop()
        self.close()


def make_executor(kind: str, jobs: int, ray_address: Optional[str] = None, evaluation_workers: int = 0):
    """The executor ``kind`` (``jobs``: fits at once on this machine; Ray schedules by the cluster's CPUs)."""
    if kind == "local":
        if ray_address:
            raise BMILError("--ray_address is for --executor ray; leave it out, or add --executor ray.")
        from bmil.executors.local import LocalExecutor

        return LocalExecutor(jobs, evaluation_workers)
    if kind == "ray":
        from bmil.executors.ray import RayExecutor

        return RayExecutor(ray_address)  # one CPU a task: each fit evaluates in its own process
    raise BMILError(f"--executor {kind}: one of {', '.join(EXECUTORS)}.")


def join_ray(address: Optional[str] = None):
    """Join the Ray cluster at ``address`` ("auto", "HOST:PORT"; None: ``RAY_ADDRESS`` or a new local
    instance), once per process; the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise BMILError("--executor ray needs Ray: pip install 'bmil[ray]' (or pip install ray).") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def cluster_cpus(address: Optional[str] = None) -> int:
    """The CPUs of the Ray cluster at ``address`` (joined first, as ``join_ray``)."""
    return max(1, int(join_ray(address).cluster_resources().get("CPU", 1)))


def fits_at_once(jobs: Optional[int], kind: str, address: Optional[str] = None) -> int:
    """A tune's or a search's fits at once: ``jobs`` where given, else the cluster's CPUs on Ray, or
    this machine's usable cores."""
    if jobs:
        return jobs
    if kind == "ray":
        return cluster_cpus(address)
    from bmil.evaluation import usable_cores

    return usable_cores()
