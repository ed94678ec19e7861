"""VINS acting: candidates scored a few observations per pass against all in one pass.

VINS scores 500 perturbed BC actions per observation with V(f(s, a)); the evaluator asks for the
actions of 16 envs at once, 8,000 rows through 500-wide layers. Prints, from one run on this
machine, one torch thread (as every evaluation runs), for each domain's dimensions:
  one pass       ms per call of 16 observations, all 8,000 rows at once
  per pass ~1k   ms per call, ~1,000 rows (two observations) per pass: what VINSSelection does
  ratio          one pass / per pass
  same actions   whether both choose bit-identical actions (they must, for recorded runs to stand)
Usage: python benchmarks/vins_acting.py [--domains pickplace,point_umaze,ant_umaze,relocate] [--repeats 20]
"""

from __future__ import annotations

from bmil import numerics

numerics.pin()  # as the bmil command does (import bmil does not), before anything loads torch

import argparse
import time

import numpy as np
import torch

from bmil.domains import get_domain
from bmil.models.policy import Policy
from bmil.models.vins import DynamicsModel, ValueFunction, VINSAgent


def agents(obs_dim: int, act_dim: int) -> tuple[VINSAgent, VINSAgent]:
    """The same untrained networks (normalisers set), acting in one pass and in passes of ~1k rows."""
    torch.manual_seed(0)
    policy, dynamics, value = Policy(obs_dim, act_dim), DynamicsModel(obs_dim, act_dim), ValueFunction(obs_dim)
    dynamics.fit_normalization(torch.randn(1000, obs_dim), torch.rand(1000, act_dim) * 2 - 1, torch.randn(1000, obs_dim))
    value.norm.fit(torch.randn(1000, obs_dim))
    one_pass = VINSAgent(policy, dynamics, value, candidates=500, action_noise=0.05)
    one_pass.obs_per_pass = 10**9
    return one_pass, VINSAgent(policy, dynamics, value, candidates=500, action_noise=0.05)


def ms_per_call(agent: VINSAgent, obs: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    agent.reset(len(obs), seed=0)
    actions = agent(obs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        agent(obs)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)), actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--domains", default="pickplace,point_umaze,ant_umaze,relocate")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'domain':<14} {'obs, act':>9} {'one pass':>10} {'per pass ~1k':>13} {'ratio':>6}  same actions")
    for name in args.domains.split(","):
        domain = get_domain(name)
        one_pass, chunked = agents(domain.obs_dim, domain.act_dim)
        obs = torch.randn(16, domain.obs_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            slow, a = ms_per_call(one_pass, obs, args.repeats)
            fast, b = ms_per_call(chunked, obs, args.repeats)
        print(f"{name:<14} {f'{domain.obs_dim}, {domain.act_dim}':>9} {slow:>8.1f}ms {fast:>11.1f}ms "
              f"{slow / fast:>6.2f}  {'yes' if torch.equal(a, b) else 'NO'}")


if __name__ == "__main__":
    main()
