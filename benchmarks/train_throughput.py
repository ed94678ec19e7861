"""Training throughput: policy steps/s for BC and BMIL, traces/s, and Lightning's overhead.

Prints, from one run on this machine (PickAndPlace, 10 demos, batch 64, the configs' settings):
  plain loop steps/s     the same policy network and batch in a bare PyTorch loop (no Lightning)
  BC steps/s             bmil.methods.BC under Lightning
  BMIL steps/s           bmil.methods.BMIL, p_d = 0.5 (backwards model to convergence, traces each epoch)
  BMIL (10 model steps)  the same with a fixed 10 backwards-model steps per epoch
  traces/s               trace transitions generated per second of trace generation
  ratios                 BC / plain loop (Lightning overhead) and BMIL / BC wall time, same policy steps
Each figure is the median of --repeats runs.
Usage: python benchmarks/train_throughput.py [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

from bmil import numerics

numerics.pin()  # as the bmil command does (import bmil does not), before anything loads torch

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from bmil.demos import generate_demos, load_demos
from bmil.methods import BC, BMIL, DemoSettings, ModelSettings, PolicySettings, TraceSettings
from bmil.models import Policy

warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def plain_loop(demos: Path, steps: int, batch: int = 64) -> float:
    td, _ = load_demos(demos)
    obs, action = td["obs"], td["action"]
    torch.manual_seed(0)
    policy = Policy(obs.shape[1], action.shape[1])
    opt = torch.optim.Adam(policy.parameters(), lr=3e-4, fused=True)  # as the methods
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(obs), (batch,), generator=g)
        loss = policy.loss(obs[idx], action[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def module_run(demos: Path, epochs: int, root: Path, method: type = BMIL, **settings) -> tuple[float, dict]:
    L.seed_everything(0, verbose=False)
    model = method(env="pickplace", demos=DemoSettings(path=str(demos), num=10),
                   policy=PolicySettings(batch_size=64, steps_per_epoch=100), **settings)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    t0 = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["model_steps_per_epoch"] = getattr(model, "model_step", 0) / epochs
    return model.policy_step / seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demos = root / "demos"
        generate_demos("pickplace", 10, seed=0, out=demos, progress=False)
        steps = args.epochs * 100
        plain, bc, bmil, bmil_fixed, traces, model_steps = [], [], [], [], [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(demos, steps))
            bc.append(module_run(demos, args.epochs, root, BC)[0])
            traces_cfg = TraceSettings(length=(1, 3), length_epochs=(1, 200), selection_coef=30.0)
            rate, metrics = module_run(demos, args.epochs, root, demo_ratio=0.5, traces=traces_cfg)
            bmil.append(rate)
            traces.append(metrics["perf/traces_per_s"])
            model_steps.append(metrics["model_steps_per_epoch"])
            fixed = dict(demo_ratio=0.5, traces=traces_cfg, model=ModelSettings(training="steps", steps=10))
            bmil_fixed.append(module_run(demos, args.epochs, root, **fixed)[0])
    med = statistics.median
    print(f"policy steps per run     {steps} ({args.epochs} epochs x 100), batch 64, {torch.get_num_threads()} threads")
    print(f"plain loop steps/s       {med(plain):,.0f}")
    print(f"BC (module) steps/s      {med(bc):,.0f}")
    print(f"BMIL (module) steps/s    {med(bmil):,.0f}  (converge: {med(model_steps):.1f} backwards-model steps/epoch on average)")
    print(f"BMIL, 10 model steps     {med(bmil_fixed):,.0f}  (model.training: steps, model.steps: 10)")
    print(f"traces/s                 {med(traces):,.0f}")
    print(f"BC / plain loop          {med(bc) / med(plain):.3f}   (Lightning overhead; target >= 0.85)")
    print(f"BMIL / BC wall time      {med(bc) / med(bmil):.3f}   (same policy steps; target <= 1.5)")
    print(f"  with 10 model steps    {med(bc) / med(bmil_fixed):.3f}")


if __name__ == "__main__":
    main()
