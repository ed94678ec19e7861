"""CCIL's labels on a domain's demos (docs/baselines.md).

- ``yield``: how many labels survive the filters, per Lipschitz bound and distance filter.
  Run: python docs/probes/ccil_label_yield.py yield pickplace 10
- ``gain``: the feedback each kept noisy-action label teaches, |a~ - a| / |s~ - s| with the state
  offset in the demos' mean step length (the unit of CCIL's filters), at one setting (the family's
  search choice), against the same ratio between neighbouring demo states.
  Run: python docs/probes/ccil_label_yield.py gain relocate 20 3 5
"""
import dataclasses
import sys

import torch

from bmil.methods import CCIL
from bmil.methods.ccil import CCILSettings, corrective_labels, lipschitz_penalty, solve_predecessor


def fitted_ccil(env: str, num: int, cfg: CCILSettings) -> CCIL:
    """A CCIL whose forward model is trained as CCIL.train_dynamics does, without a Trainer."""
    torch.manual_seed(0)  # the networks' initialisation
    method = CCIL(env=env, demos={"num": num}, ccil=cfg)
    method.setup("fit")
    obs, action, next_obs = method.demo_rows_at(slice(None))
    optimizer, generator = torch.optim.Adam(method.dynamics.parameters(), lr=cfg.model_lr), torch.Generator().manual_seed(0)
    for _ in range(cfg.model_steps):
        idx = torch.randint(len(obs), (cfg.model_batch_size,), generator=generator)
        loss = method.dynamics.loss(obs[idx], action[idx], next_obs[idx]) + cfg.lipschitz_weight * lipschitz_penalty(
            method.dynamics.net, method.dynamics.inputs(obs[idx], action[idx]), cfg.lipschitz, cfg.lipschitz_eps, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return method


def label_yield(env: str, num: int) -> None:
    for bound in (0.5, 1.0, 3.0, 10.0):
        cfg = CCILSettings(lipschitz=bound)
        method = fitted_ccil(env, num, cfg)
        obs, action, next_obs = method.demo_rows_at(slice(None))
        for distance in (2.0, 5.0):
            settings = dataclasses.replace(cfg, max_distance=distance)
            counts = corrective_labels(method.state_change, obs, action, next_obs, settings, torch.Generator().manual_seed(0))[2]
            print(f"lipschitz {bound}, max_distance {distance}: {len(obs)} transitions, {counts}")


def label_gain(env: str, num: int, bound: float, distance: float) -> None:
    """Median |a~ - a| / |s~ - s| over the noisy-action labels CCILSettings' filters keep, against
    the same ratio between each demo state and its nearest other demo state."""
    cfg = CCILSettings(lipschitz=bound, max_distance=distance)
    method = fitted_ccil(env, num, cfg)
    obs, action, next_obs = method.demo_rows_at(slice(None))
    unit = (next_obs - obs).norm(dim=-1).mean()
    with torch.no_grad():
        fits = (method.dynamics(obs, action) - next_obs).norm(dim=-1) <= cfg.fit_tolerance * unit
        noise = torch.randn(action.shape, generator=torch.Generator().manual_seed(0))
        noisy_action = (action + cfg.action_noise * noise).clamp(-1, 1)
        label_obs, residual = solve_predecessor(method.state_change, next_obs, noisy_action, cfg.iterations)
    kept = fits & (residual <= cfg.tolerance * unit) & ((label_obs - obs).norm(dim=-1) <= distance * unit)
    offset = (label_obs - obs).norm(dim=-1)[kept] / unit
    label = (noisy_action - action).norm(dim=-1)[kept] / offset
    gaps = (torch.cdist(obs, obs) / unit).fill_diagonal_(float("inf"))
    nearest_gap, nearest = gaps.min(-1)
    demo = (action - action[nearest]).norm(dim=-1) / nearest_gap.clamp_min(1e-6)
    print(f"{env} (lipschitz {bound}, max_distance {distance}): {int(kept.sum())} of {len(obs)} noisy-action labels kept; "
          f"median state offset {offset.median():.3f} steps, action change {(noisy_action - action).norm(dim=-1)[kept].median():.3f}; "
          f"median gain: labels {label.median():.3g}, demos' nearest neighbours {demo.median():.3g}, ratio {label.median() / demo.median():.3g}")


if __name__ == "__main__":
    {"yield": lambda a: label_yield(a[0], int(a[1])),
     "gain": lambda a: label_gain(a[0], int(a[1]), float(a[2]), float(a[3]))}[sys.argv[1]](sys.argv[2:])
