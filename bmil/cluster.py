"""The Ray cluster a process joins (``--executor ray``, ``--robustness.executor ray``), and how many
fits a study or tune runs at once. A leaf below every layer that uses Ray."""

from __future__ import annotations

import os
import socket
from typing import Optional

from bmil import numerics
from bmil.errors import BMILError
from bmil.system import usable_cores


CONNECT_S = 10.0  # how long a cluster's head may take to answer before bmil gives up on it


def join_ray(address: Optional[str] = None):
    """Join the Ray cluster at ``address`` ("auto", "HOST:PORT"; None: ``RAY_ADDRESS`` or a new local
    instance), once per process; the ``ray`` module. A head that does not answer at a "HOST:PORT" is
    one error within ``CONNECT_S`` seconds (Ray itself retries for ever)."""
    try:
        import ray
    except ImportError:
        raise BMILError("--executor ray needs Ray: pip install 'bmil[ray]' (or pip install ray).") from None
    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        if target and target not in ("auto", "local") and "://" not in target:
            _head_answers(target)
        try:
            # Ray's workers pin their numerics as this process does, before they load torch.
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env=numerics.ray_runtime_env())
        except ConnectionError as e:  # Ray's own retries are over (about 20 s)
            if target in (None, "auto") and "Could not find any running Ray instance" in str(e):
                raise BMILError(f"Ray address '{target}': no Ray cluster runs on this machine to join. Start one "
                                "(ray start --head), or give the head's HOST:PORT: docs/cluster.md.") from None
            raise BMILError(f"Ray address '{target or 'auto'}': this process could not join the cluster (Ray: {e}). "
                            "Where Ray's log above says InvalidAuthToken, the head uses token authentication: set "
                            "RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN) here; otherwise the address is not a "
                            "running Ray head's (a stale one of a stopped cluster?): docs/cluster.md.") from None
    return ray


def _head_answers(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BMILError(f"Ray address '{address}': give HOST:PORT (the head's, e.g. 10.0.0.5:6379), auto, or none "
                        "for a local Ray instance.")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_S).close()
    except OSError as e:
        raise BMILError(f"Ray address '{address}': no Ray head answers there ({e.strerror or e}). Start one "
                        f"(ray start --head --port {port}) or give the head's address.") from None


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
