"""Evaluation throughput against the ideal of one raw MuJoCo env per core.

Prints, from one run on this machine:
  raw single-env steps/s   gymnasium-robotics Fetch env, random actions, reset every 50 steps
  eval env-steps/s         bmil's Evaluator, all cores, a 3x256 MLP policy, robustness starts
  ratio                    eval / (cores x raw single); 1.0 is perfect scaling with zero overhead
Usage: python benchmarks/eval_throughput.py [--env pickplace] [--episodes 640] [--workers N]
"""

from __future__ import annotations

from bmil import numerics

numerics.pin()  # as the bmil command does (import bmil does not), before anything loads torch

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bmil.domains import get_domain
from bmil.evaluation import Evaluator, usable_cores


def raw_steps_per_second(env_id: str, seconds: float = 5.0) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            env.step(env.action_space.sample())
        env.reset()
        steps += 50
    return steps / (time.perf_counter() - t0)


def mlp_policy(obs_dim: int, act_dim: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, act_dim), nn.Tanh(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--env", default="pickplace")
    parser.add_argument("--episodes", type=int, default=640)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    domain = get_domain(args.env)
    torch.set_num_threads(1)
    env_id = domain.make_env().spec.id
    raw = raw_steps_per_second(env_id)
    policy = mlp_policy(domain.obs_dim, domain.act_dim)
    rates = []
    with Evaluator(domain, workers=args.workers) as evaluator:
        evaluator.run(policy, "robustness", 2 * args.workers * evaluator.batch_size, seed=99)  # warm-up
        for r in range(args.repeats):
            t0 = time.perf_counter()
            result = evaluator.run(policy, "robustness", args.episodes, seed=r)
            rates.append(result.steps.sum() / (time.perf_counter() - t0))
    eval_rate = float(np.median(rates))
    ideal = args.workers * raw
    print(f"env                      {args.env} ({env_id})")
    print(f"raw single-env steps/s   {raw:,.0f}")
    print(f"eval env-steps/s         {eval_rate:,.0f}  (median of {args.repeats}: "
          f"{', '.join(f'{x:,.0f}' for x in rates)}; {args.workers} workers, {args.episodes} episodes)")
    print(f"ratio over ideal         {eval_rate / ideal:.3f}  (ideal = {args.workers} x raw = {ideal:,.0f})")


if __name__ == "__main__":
    main()
