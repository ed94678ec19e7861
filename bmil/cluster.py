"""The Ray cluster a process joins (``--executor ray``, ``--robustness.executor ray``), and how many
fits a study or tune runs at once. A leaf below every layer that uses Ray."""

from __future__ import annotations

from typing import Optional

from bmil.errors import BMILError
from bmil.system import usable_cores


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
    return usable_cores()
