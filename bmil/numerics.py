"""Portable CPU numerics: the same float results, and so the same digits, on any x86-64 CPU with AVX2.

One torch wheel computes differently on different CPUs: oneMKL's sgemm takes another branch on AMD
than on Intel and another on AVX-512 than on AVX2, and ATen's vectorised kernels use the widest ISA
they find. BMIL amplifies the last bit of such rounding into other robustness figures (docs/results.md,
"make fit"). ``pin`` fixes those paths before torch is loaded. The ``bmil`` command calls it, and so
do the processes bmil starts (evaluation workers, spawned in ``pinned_environment``; a study's or tune's fits,
being ``bmil fit`` commands; Ray's workers, through ``ray_runtime_env``); ``import bmil`` does not, so a
host program that loads a policy keeps its own threads and code paths (it calls ``pin`` first
thing to compute as the command does). Measured on bmil's
networks (docs/numerics.md): MKL_CBWR and ATEN_CPU_CAPABILITY both change the weights, and the thread
count does too once MKL is pinned; ONEDNN_MAX_CPU_ISA changed nothing (no oneDNN op in bmil's
networks) and is pinned for users' own networks, at no cost. MuJoCo has no run-time dispatch, and
numpy's (NPY_DISABLE_CPU_FEATURES) changed neither demonstrations nor evaluations, so neither is pinned.

``BMIL_NUMERICS=compatible`` pins oneMKL's COMPATIBLE path instead of its AVX2 branch (meant to hold
across vendors; 1.87x native on a point-maze fit); ``BMIL_NUMERICS=native`` leaves the CPU's fastest
paths (digits then hold on one CPU model only). A variable the user set is kept, and the run record
(``record``) says whether the run is portable.
This module must not import torch.
"""

from __future__ import annotations

import os
import platform

from bmil.system import environment

PINS = {
    "MKL_CBWR": "AVX2",  # oneMKL's AVX2 branch (on AMD, the one it takes anyway)
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's kernels: AVX2, also where AVX-512 exists
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# BMIL_NUMERICS=compatible: oneMKL's one code path for every x86 CPU, meant to be the same on Intel and
# AMD (not yet measured on Intel), at 1.87x native on a point-maze fit (docs/numerics.md).
COMPATIBLE = {**PINS, "MKL_CBWR": "COMPATIBLE"}
# Float sums reduce in a thread-count-dependent order: one thread unless the user sets another count.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MODE_VARIABLE = "BMIL_NUMERICS"
MODES = ("portable", "compatible", "native")


def mode() -> str:
    """portable (the default), compatible or native; a value that is none of them is portable."""
    value = os.environ.get(MODE_VARIABLE, "portable").strip().lower()
    return value if value in MODES else "portable"


def pins() -> dict[str, str]:
    """The variables this mode pins (none where native)."""
    return {"portable": PINS, "compatible": COMPATIBLE, "native": {}}[mode()]


def pin() -> None:
    """Set the pins (and one thread) in this process's environment, where the user has not set them;
    children (evaluation workers, a study's fits) inherit them. Without effect once torch is loaded.
    ATen and oneDNN are pinned to AVX2 only where the CPU has AVX2 and FMA: torch would run AVX2
    kernels on a CPU without them (an illegal instruction); such a run's record says not portable."""
    unset = _unset()
    os.environ.update(unset)
    _SET_HERE.update(unset)


_SET_HERE: set[str] = set()  # the variables pin set (the others the user set)


def ray_runtime_env() -> dict:
    """A Ray job's runtime_env in which every worker pins as this process would, for its own CPU (an
    AVX2 pin is only for a CPU with AVX2): this process's mode and the variables its user set, and
    ``pin`` as each worker's setup hook, run before the worker loads torch."""
    given = {name: os.environ[name] for name in (*PINS, *THREADS) if name in os.environ and name not in _SET_HERE}
    return {"env_vars": {**given, MODE_VARIABLE: mode()}, "worker_process_setup_hook": f"{__name__}.pin"}


def _unset() -> dict[str, str]:
    """The variables this mode pins on this CPU (its pins and one thread) that the user has not set."""
    if mode() == "native":
        return {}
    chosen = {MODE_VARIABLE: mode(), **pins(), **THREADS}
    if not _has_avx2():
        chosen = {k: v for k, v in chosen.items() if k in (MODE_VARIABLE, "MKL_CBWR", *THREADS)}
    return {name: value for name, value in chosen.items() if name not in os.environ}


def pinned_environment():
    """The pins in this process's environment (where unset) while processes are started inside, then
    the environment as it was: a spawned worker inherits them before it imports anything, torch
    included, even where the host program is unpinned."""
    return environment(_unset())


def _has_avx2() -> bool:
    return {"avx2", "fma"} <= set(_cpu_fields().get("flags", "").split())


def _cpu_fields() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name, family and model number (Linux), else what platform knows."""
    fields = _cpu_fields()
    if not fields:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, {isa})")


def record() -> dict:
    """What a run's digits depend on: the CPU, torch's kernels, the pins and thread count in force.
    ``portable`` is true when every pin holds and torch runs its AVX2 kernels; the thread count is
    part of the run's seed as well (the same count on any CPU gives the same digits)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    values = {name: os.environ.get(name) for name in (*PINS, *THREADS)}
    threads = torch.get_num_threads()
    portable = (mode() != "native" and all(values[name] == value for name, value in pins().items())
                and capability == "AVX2")
    return {"mode": mode(), "portable": portable, "cpu": cpu_model(), "torch_cpu_capability": capability,
            "torch_threads": threads, "variables": values, "torch": torch.__version__}


def describe(rec: dict) -> str:
    """One line for a run's start: whether its digits carry to other CPUs, and why not."""
    if rec["portable"]:
        threads = f"{rec['torch_threads']} torch thread{'s' if rec['torch_threads'] > 1 else ''}"
        return (f"numerics: {rec['mode']} (AVX2 kernels, MKL_CBWR={rec['variables']['MKL_CBWR']}, {threads}) "
                f"on {rec['cpu']}")
    reasons = []
    if rec["mode"] == "native":
        reasons.append(f"{MODE_VARIABLE}=native")
    wanted = COMPATIBLE if rec["mode"] == "compatible" else PINS
    reasons += [f"{name}={rec['variables'][name]}" for name, value in wanted.items()
                if rec["mode"] != "native" and rec["variables"][name] != value]
    if rec["torch_cpu_capability"] != "AVX2":
        reasons.append(f"torch's CPU capability is {rec['torch_cpu_capability']}"
                       + (" (torch was loaded before bmil.numerics.pin())" if rec["mode"] == "portable" else ""))
    return f"numerics: this CPU's own ({', '.join(reasons)}); the digits hold on {rec['cpu']} only"
