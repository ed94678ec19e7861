"""Executors: how a study's or a tune's fits run, behind one seam (``submit`` a run, get a future of
its result; ``wait_any``; ``stop``; a context manager). ``local`` (the default): processes on this
machine, no server. ``ray``: tasks on a Ray cluster (``bmil/executors/ray.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from bmil.errors import BMILError
from bmil.executors.base import Executor
from bmil.executors.local import LocalExecutor

EXECUTORS = ("local", "ray")
__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor"]


def make_executor(kind: str, jobs: int, ray_address: Optional[str] = None, evaluation_workers: int = 0,
                  die_with_driver: bool = False, model_cache: Optional[Path] = None):
    """The executor ``kind`` (``jobs``: fits at once on this machine; Ray schedules by the cluster's CPUs;
    ``die_with_driver``: local fits end when this process does, however it ends; ``model_cache``:
    where local fits share their dynamics models, which Ray's nodes, sharing no folder, do not)."""
    if kind == "local":
        if ray_address:
            raise BMILError("--ray_address is for --executor ray; leave it out, or add --executor ray.")
        return LocalExecutor(jobs, evaluation_workers, die_with_driver, model_cache)
    if kind == "ray":
        from bmil.executors.ray import RayExecutor  # (Ray is an extra: imported only when asked for)

        return RayExecutor(ray_address)  # one CPU a task: each fit evaluates in its own process
    raise BMILError(f"--executor {kind}: one of {', '.join(EXECUTORS)}.")
