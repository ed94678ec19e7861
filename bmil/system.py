"""Process plumbing: the cores this process may use, signals held while child processes start,
children that die with their parent, glfw loaded directly in children. A leaf: nothing of bmil."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, cgroups' cpusets), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies, even by SIGKILL (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM back while worker processes start: a handler that raises between
    launching a worker and sending it its task leaves the worker to die of an EOFError traceback.
    This process defers both signals (blocking alone would not do: another thread may take them).
    SIGINT is also blocked, as a process starts with its parent's blocked signals: a worker still
    importing (before it ignores SIGINT) is spared a Ctrl-C to the group, while SIGTERM still ends
    it at once, silently. Held signals are delivered when this ends."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    # None: a handler not set from Python, which could not be put back
    handlers = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None}
    for signum in handlers:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``values`` in this process's environment while processes are started inside (a spawned process
    takes the environment as it starts), then the environment as it was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_glfw_directly() -> None:
    """A spawned worker imports glfw (through gymnasium's MuJoCo renderer), which otherwise probes
    each candidate library in a Python subprocess; a worker ended during that probe leaves the probe
    to print a BrokenPipeError traceback. Workers inherit the environment, so naming the library this
    process loaded makes them load it at once."""
    library = getattr(sys.modules.get("glfw.library"), "glfw", None)
    if library is not None:
        os.environ.setdefault("PYGLFW_LIBRARY", library._name)
