"""A mini study on a Ray cluster of 1 and of 2 worker nodes: wall time and its ratio.

Prints, from one run on this machine (a ``ray.cluster_utils.Cluster``: a head without CPUs and N
worker nodes of one CPU each, started afresh for each repetition, its start-up not timed):
  per repetition   the study's wall time on 1 node and on 2 nodes, alternating
  medians, ratio   median(1 node) / median(2 nodes); 2.0 is perfect scaling
  records          whether every run's result.json (less seconds and resumed) is the same in all
On one machine the nodes share its cores with Ray's own processes: run it on an idle machine with
at least 2 cores, and read the ratio as a lower bound of what separate machines give.
Usage: python benchmarks/ray_nodes.py [--runs 6] [--epochs 20] [--reps 3]
"""

from __future__ import annotations

from bmil import numerics

numerics.pin()  # as the bmil command does (import bmil does not), before anything loads torch

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ray
import yaml
from ray.cluster_utils import Cluster

from bmil.studies.catalog import Run, Study
from bmil.studies.sweep import run_study

HISTORY = ("seconds", "resumed")


def mini_study(folder: Path, runs: int, epochs: int) -> Study:
    """``runs`` push BC fits (seeds 0..runs-1) of ``epochs`` epochs, validating every 5."""
    tiny = {"trainer": {"max_epochs": epochs}, "training_success": {"every_n_epochs": 0},
            "validation": {"every_n_epochs": 5, "episodes": 10}, "robustness": {"every_n_epochs": 0, "final_episodes": 50},
            "model.init_args.demos.num": 2, "model.init_args.policy.steps_per_epoch": 20}
    (folder / "mini.yaml").write_text(yaml.safe_dump(tiny))
    extra = ("--config", str(folder / "mini.yaml"))
    return Study("table1", [Run("push", "BC", s, ("conf/push.yaml", "conf/bc.yaml"), extra=extra) for s in range(runs)])


def on_cluster(study: Study, out: Path, nodes: int) -> float:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        t0 = time.perf_counter()
        results = run_study(study, out, jobs=nodes, progress=lambda *_: None, executor="ray")
        seconds = time.perf_counter() - t0
    finally:
        ray.shutdown()
        cluster.shutdown()
    failed = [r for r in results if r.get("failed")]
    if failed:
        raise SystemExit(f"runs failed: {failed}")
    return seconds


def records(study: Study, out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads((r.folder(out) / "result.json").read_text()).items() if k not in HISTORY}
            for r in study.runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study = mini_study(folder, args.runs, args.epochs)
        times: dict[int, list[float]] = {1: [], 2: []}
        outcomes = []
        for rep in range(args.reps):
            for nodes in (1, 2):
                out = folder / f"n{nodes}_r{rep}"
                times[nodes].append(on_cluster(study, out, nodes))
                outcomes.append(records(study, out))
                print(f"repetition {rep + 1}, {nodes} node(s): {times[nodes][-1]:.1f} s", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.runs} push BC fits of {args.epochs} epochs: median {one:.1f} s on 1 node, {two:.1f} s on 2 nodes; "
          f"ratio {one / two:.2f}x")
    print(f"records equal in every repetition: {all(o == outcomes[0] for o in outcomes)}")


if __name__ == "__main__":
    main()
