"""Where a fit's time goes: the wall seconds of each phase of Algorithm 1 and of the evaluations,
from one run on this machine, with what the policy used of the traces made.

    python benchmarks/epoch_profile.py --config conf/pickplace.yaml --epochs 10
    python benchmarks/epoch_profile.py --config conf/pickplace.yaml --epochs 10 --config conf/bc.yaml

Phases: the dynamics model's training (Algorithm 1, line 2), the trace roll-outs (line 3), the
policy steps (lines 4-7), each evaluation group, and the rest (Lightning, checkpoints, logging).
Trace rows: those rolled out, and those the policy's batches drew (with replacement).
Extra arguments are passed to ``bmil fit`` (e.g. --validation.every_n_epochs 5).
"""

from __future__ import annotations

from bmil import numerics

numerics.pin()  # as the bmil command does (import bmil does not), before anything loads torch

import argparse
import functools
import tempfile
import time
from collections import defaultdict

from bmil.cli import main
from bmil.methods import ImitationMethod
from bmil.methods.bmil import BMIL
from callbacks.evaluation import PolicyEvaluation

SECONDS: dict[str, float] = defaultdict(float)
ROWS = {"rolled out": 0, "drawn": 0}


def _timed(cls, name: str, phase) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            SECONDS[phase(self) if callable(phase) else phase] += time.perf_counter() - t0

    setattr(cls, name, timed)


def _count_rows() -> None:
    generate, policy = BMIL.generate_traces, ImitationMethod.train_policy

    def counted_generate(self):
        generate(self)
        ROWS["rolled out"] += int(self._metrics["train/traces"])

    def counted_policy(self):
        if isinstance(self, BMIL):
            ROWS["drawn"] += self.trace_rows * self.policy_cfg.steps_per_epoch
        return policy(self)

    BMIL.generate_traces, ImitationMethod.train_policy = counted_generate, counted_policy


def profile(args: list[str]) -> dict[str, float]:
    _count_rows()
    _timed(BMIL, "train_model", "model training")
    _timed(BMIL, "train_model_first", "model training")
    _timed(BMIL, "generate_traces", "trace roll-outs")
    _timed(ImitationMethod, "train_policy", "policy steps")
    _timed(PolicyEvaluation, "evaluate", lambda callback: f"evaluation: {callback.group}")
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        main(["fit", *args, "--trainer.logger.init_args.save_dir", folder])
        total = time.perf_counter() - t0
    return {**SECONDS, "total": total}


def report(seconds: dict[str, float], epochs: int) -> str:
    total = seconds.pop("total")
    seconds["rest (start-up, Lightning, checkpoints, logs)"] = total - sum(seconds.values())
    lines = [f"{'phase':<48}{'seconds':>9}{'share':>8}{'per epoch':>11}"]
    for phase, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        lines.append(f"{phase:<48}{s:9.1f}{100 * s / total:7.1f}%{s / epochs:11.3f}")
    lines.append(f"{'total':<48}{total:9.1f}{100.0:7.1f}%{total / epochs:11.3f}")
    if ROWS["rolled out"]:
        lines.append(f"trace rows rolled out {ROWS['rolled out']}, drawn by the policy {ROWS['drawn']} "
                     f"({ROWS['drawn'] / ROWS['rolled out']:.2f} draws a row)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    known, extra = parser.parse_known_args()
    print(report(profile([*extra, "--trainer.max_epochs", str(known.epochs)]), known.epochs))
