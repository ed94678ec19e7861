"""Episodes in lockstep: one batched policy call per step over a list of environments, each reset
to its own start. What a policy is, and the random one (a lower bound for robustness)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import numpy as np
import torch

from bmil.errors import BMILError

Policy = Callable[[torch.Tensor], torch.Tensor]
SuccessMode = Literal["final", "any"]


@dataclass
class Rollout:
    """The episodes of one ``run_episodes`` call, one entry per start in its order."""

    success: np.ndarray  # (n,) bool, judged as the call's success mode says
    steps: np.ndarray  # (n,) int, steps each episode ran
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # info key -> (n,) bool at every episode's end
    transitions: Optional[list[dict]] = None  # with ``record``: per episode, arrays obs, action, next_obs


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of an evaluation seeded ``seed`` (env reset noise)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def run_episodes(envs: list, policy: Policy, starts: np.ndarray, seeds: list[int], horizon: int,
                 success_mode: SuccessMode = "final", stop_on_success: bool = False, record: bool = False,
                 flags: tuple[str, ...] = ()) -> Rollout:
    """Run one episode per start in lockstep over ``envs`` (at least ``len(starts)`` of them).

    ``stop_on_success`` ends an episode at its first success (envs that terminate on success end
    there anyway); ``record`` keeps every transition; ``flags`` are info keys whose value at every
    episode's end the rollout reports.
    """
    n = len(starts)
    if success_mode not in ("final", "any"):
        raise BMILError(f"success must be 'final' or 'any', got '{success_mode}'.")
    obs, success_now = [], np.zeros(n, dtype=bool)
    ends = {key: np.zeros(n, dtype=bool) for key in flags}
    for i in range(n):
        o, info = envs[i].reset(seed=seeds[i], options={"start": starts[i]})
        obs.append(o)
        success_now[i] = bool(info.get("is_success", False))
        for key in ends:
            ends[key][i] = bool(info.get(key, False))
    obs = np.stack(obs)
    ever = success_now.copy()
    active = ~(success_now & stop_on_success)  # started at the goal: over before its first step
    steps = np.zeros(n, dtype=np.int64)
    traces = [{"obs": [], "action": [], "next_obs": []} for _ in range(n)] if record else None
    if hasattr(policy, "reset"):
        policy.reset(n, seeds[0])
    for _ in range(horizon):
        with torch.inference_mode():
            actions = policy(torch.as_tensor(obs, dtype=torch.float32))
        actions = _check_actions(actions, n)
        for i in np.flatnonzero(active):
            o, _, terminated, truncated, info = envs[i].step(actions[i])
            success_now[i] = bool(info.get("is_success", False))
            for key in ends:
                ends[key][i] = bool(info.get(key, False))
            ever[i] |= success_now[i]
            steps[i] += 1
            if record:
                for key, value in (("obs", obs[i].copy()), ("action", actions[i]), ("next_obs", o)):
                    traces[i][key].append(value)
            obs[i] = o
            if terminated or (stop_on_success and success_now[i]):
                active[i] = False
        if not active.any():
            break
    success = success_now if success_mode == "final" else ever
    if record:
        traces = [{k: np.stack(v) for k, v in t.items()} for t in traces]
    return Rollout(success, steps, ends, traces)


def _check_actions(actions, n: int) -> np.ndarray:
    actions = torch.as_tensor(actions).detach().cpu().numpy()
    if actions.ndim != 2 or actions.shape[0] != n:
        raise BMILError(f"The policy returned actions of shape {actions.shape}; expected ({n}, act_dim).")
    if not np.isfinite(actions).all():
        raise BMILError("The policy returned non-finite actions (NaN or inf); check its weights.")
    return actions


class RandomPolicy:
    """Uniform random actions in [-1, 1], seeded per batch (a lower bound for robustness)."""

    def __init__(self, act_dim: int):
        self.act_dim = act_dim
        self.rng = np.random.default_rng(0)

    def reset(self, num_envs: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.rng.uniform(-1, 1, (len(obs), self.act_dim)), dtype=torch.float32)
