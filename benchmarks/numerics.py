"""What the numeric pins change and what they cost (docs/numerics.md), measured in one run.

    python benchmarks/numerics.py fingerprint   # the weights after 3 epochs under each set of variables
    python benchmarks/numerics.py cost --runs 3  # make fit's command, native and pinned, alternating

``fingerprint`` trains conf/pickplace_quick.yaml for 3 epochs (evaluations off) in a fresh process per
set of variables and prints a hash of the policy's weights: sets that print the same hash compute the
same floats. ``cost`` times ``bmil fit --config conf/pickplace_quick.yaml`` with BMIL_NUMERICS=native
and with the pins (the default), alternating so that load drifts hit both, and prints each run's
seconds and digits, the medians and their ratio. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BMIL = [sys.executable, "-m", "bmil.cli", "fit", "--config", "conf/pickplace_quick.yaml"]
PINS = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SETS = {  # BMIL_NUMERICS=native, then only these variables
    "none": {},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2": {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=avx2": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"},
    "bmil's pins": None,  # BMIL_NUMERICS=portable
    "bmil's pins, 2 threads": {"threads": "2"},
}


def _env(variables: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    if variables is None or "threads" in (variables or {}):
        threads = (variables or {}).get("threads", "1")
        return {**env, "BMIL_NUMERICS": "portable", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return {**env, "BMIL_NUMERICS": "native", "OMP_NUM_THREADS": "1", **variables}


def fingerprint(variables: dict | None) -> str:
    with tempfile.TemporaryDirectory() as folder:
        off = ["--trainer.max_epochs", "3", "--training_success.every_n_epochs", "0", "--robustness.every_n_epochs",
               "0", "--robustness.final_episodes", "0", "--validation.every_n_epochs", "0",
               "--trainer.logger.init_args.save_dir", folder]
        subprocess.run([*BMIL, *off], cwd=ROOT, env=_env(variables), check=True, capture_output=True)
        code = ("import sys, hashlib, torch; sd = torch.load(sys.argv[1], weights_only=True)['state_dict']; "
                "h = hashlib.sha256(); [h.update(sd[k].numpy().tobytes()) for k in sorted(sd)]; print(h.hexdigest()[:8])")
        ckpt = glob.glob(f"{folder}/**/last.ckpt", recursive=True)[0]
        return subprocess.run([sys.executable, "-c", code, ckpt], capture_output=True, text=True, check=True).stdout.strip()


def cost(runs: int) -> None:
    seconds: dict[str, list[float]] = {"native": [], "pinned": []}
    for i in range(runs):
        for name, mode in (("native", "native"), ("pinned", "portable")):
            with tempfile.TemporaryDirectory() as folder:
                t0 = time.perf_counter()
                done = subprocess.run([*BMIL, "--trainer.logger.init_args.save_dir", folder], cwd=ROOT, text=True,
                                      capture_output=True, env={**_env(None), "BMIL_NUMERICS": mode})
                seconds[name].append(time.perf_counter() - t0)
            digits = re.search(r"final robustness .*?success ([0-9.]+%)", done.stdout)
            print(f"{name:<7} run {i + 1}: {seconds[name][-1]:6.1f} s, last policy "
                  f"{digits.group(1) if digits else 'FAILED: ' + done.stderr[-300:]}", flush=True)
    native, pinned = (statistics.median(seconds[k]) for k in ("native", "pinned"))
    print(f"median native {native:.1f} s, pinned {pinned:.1f} s: the pins cost {pinned / native:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("fingerprint", "cost"))
    parser.add_argument("--runs", type=int, default=3, help="cost: runs of each")
    args = parser.parse_args()
    if args.mode == "cost":
        cost(args.runs)
        return
    for name, variables in SETS.items():
        print(f"{fingerprint(variables)}  {name}", flush=True)


if __name__ == "__main__":
    main()
