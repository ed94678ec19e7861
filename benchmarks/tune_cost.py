"""What a tune cost, stage by stage, and what it found: the medium-maze tutorial tune of
docs/your-own-task.md §6 (or any finished tune's folder).

    python benchmarks/tune_cost.py --out tune/pointmaze_medium           # run the tutorial's tune there, then report
    python benchmarks/tune_cost.py --out tune/pointmaze_medium --report  # report a finished tune only

Running it needs the tutorial's demonstrations (``python -m bmil.examples.pointmaze_demos --maze medium
--out-id pointmaze/medium-bmil-v0 --episodes 20``) and hours of CPU: a resumed tune goes on where it
stopped, so run it detached. The report gives each stage's core-hours (each fit's own clock, one core
a fit) against the recorded 7.3, the pruned trials' time, and each method's test robustness of its
chosen settings with the 95% t-interval over the final seeds and each seed's Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ["--config", "conf/examples/pointmaze_medium.yaml", "--methods", "bmil,bc,noise_bc,ccil", "--trials", "8",
            "--jobs", "2", "--finalists", "2", "--finalist_seeds", "1"]
RECORDED = {"trials": 2.5, "finalists": 1.2, "final runs": 3.5, "total": 7.3}  # docs/your-own-task.md §6, 2026-12-06


def report(out: Path) -> None:
    from bmil.tuning.outputs import mean_ci

    summary = json.loads((out / "summary.json").read_text())
    spent = summary["core_hours"]
    print("| stage | core-hours | recorded (2026-12-06) | ratio |\n| --- | --- | --- | --- |")
    for stage, hours in spent.items():
        before = RECORDED.get(stage)
        ratio = f"{before / hours:.1f}x less" if before and hours else "-"
        print(f"| {stage} | {hours:.2f} | {before if before is not None else '-'} | {ratio} |")
    pruned = sum(p["pruned_core_hours"] for p in summary["pruning"].values())
    saved = sum(p["saved_core_hours"] for p in summary["pruning"].values())
    print(f"\npruned trials: {pruned:.2f} core-hours (run to their end: about {pruned + saved:.2f})")
    print(f"winner (on validation starts): {summary['winner']}")
    for method, kinds in summary["final"].items():
        for kind, runs in kinds.items():
            per_seed = []
            for run in runs:
                result = json.loads((out / "runs" / run["run"] / "version_0" / "result.json").read_text())
                low, high = result.get("best_robustness_ci_low"), result.get("best_robustness_ci_high")
                per_seed.append(f"{100 * run['test']:.1f} ({100 * low:.1f}-{100 * high:.1f})" if low is not None
                                else f"{100 * run['test']:.1f}")
            print(f"{method} {kind}: test {mean_ci([r['test'] for r in runs])} (seeds: {', '.join(per_seed)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the tune's folder")
    parser.add_argument("--report", action="store_true", help="report a finished tune, run nothing")
    args = parser.parse_args()
    if not args.report:
        command = [sys.executable, "-m", "bmil.cli", "tune", *TUTORIAL, "--out", str(args.out)]
        print("$ bmil tune " + " ".join(command[4:]), flush=True)
        subprocess.run(command, check=True)
    report(args.out)


if __name__ == "__main__":
    main()
