"""What the numeric pins change and what they cost (docs/numerics.md), measured in one run.

    python benchmarks/numerics.py fingerprint   # the weights after 3 epochs under each set of variables
    python benchmarks/numerics.py cost --runs 3  # make fit's command in each numerics mode, alternating
    python benchmarks/numerics.py cost --runs 3 --fit "--config conf/point_umaze.yaml ..."  # another fit

``fingerprint`` trains conf/pickplace_quick.yaml for 3 epochs (evaluations off) in a fresh process per
set of variables and prints a hash of the policy's weights: sets that print the same hash compute the
same floats. ``cost`` times ``bmil fit --config conf/pickplace_quick.yaml`` (or ``--fit``'s arguments)
with BMIL_NUMERICS=native, portable (the default) and compatible, one run of each in turn so that
load drifts hit all, and prints each run's seconds and digits, the medians and their ratios to
native. Run it on an otherwise idle machine.
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
    "BMIL_NUMERICS=compatible": {"mode": "compatible"},
    "bmil's pins, 2 threads": {"threads": "2"},
}


def _env(variables: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    if variables is None or "threads" in variables or "mode" in variables:
        threads = (variables or {}).get("threads", "1")
        return {**env, "BMIL_NUMERICS": (variables or {}).get("mode", "portable"), "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads}
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


def cost(runs: int, fit: list[str]) -> None:
    modes = ("native", "portable", "compatible")
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(runs):
        for mode in modes:
            with tempfile.TemporaryDirectory() as folder:
                t0 = time.perf_counter()
                done = subprocess.run([*BMIL[:3], "fit", *fit, "--trainer.logger.init_args.save_dir", folder], cwd=ROOT,
                                      text=True, capture_output=True, env=_env({"mode": mode}))
                seconds[mode].append(time.perf_counter() - t0)
            digits = re.search(r"final robustness.*?success ([0-9.]+%)", done.stdout)
            print(f"{mode:<10} run {i + 1}: {seconds[mode][-1]:6.1f} s, last policy "
                  f"{digits.group(1) if digits else 'FAILED: ' + done.stderr[-300:]}", flush=True)
    medians = {m: statistics.median(seconds[m]) for m in modes}
    print("medians: " + ", ".join(f"{m} {medians[m]:.1f} s ({medians[m] / medians['native']:.2f}x native)" for m in modes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("fingerprint", "cost"))
    parser.add_argument("--runs", type=int, default=3, help="cost: runs of each")
    parser.add_argument("--fit", default="--config conf/pickplace_quick.yaml", help="cost: the bmil fit arguments")
    args = parser.parse_args()
    if args.mode == "cost":
        cost(args.runs, args.fit.split())
        return
    for name, variables in SETS.items():
        print(f"{fingerprint(variables)}  {name}", flush=True)


if __name__ == "__main__":
    main()
