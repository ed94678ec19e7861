"""Adroit Relocate's robustness picture (the paper shows none): where the palm starts, coloured by
outcome, and success against how far the start moved the palm."""

from __future__ import annotations

import mujoco
import numpy as np

from bmil.domains.adroit.env import OBJECT_POS, TARGET_POS
from bmil.plots import plt


def palm_starts(model: mujoco.MjModel, starts: np.ndarray) -> np.ndarray:
    """World position of the palm (site S_grasp) at each start row's pose (rest pose + offsets)."""
    data = mujoco.MjData(model)
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
    out = np.empty((len(starts), 3))
    for k, row in enumerate(starts):
        data.qpos[:] = model.qpos0 + row
        mujoco.mj_kinematics(model, data)
        out[k] = data.site_xpos[site]
    return out


def relocate_figure(result, model, title: str = ""):
    """Left: palm start positions seen from above (x, y), successes green, failures grey, the
    training start red, ball orange, target blue. Right: success rate against the palm's distance
    from its training start (deciles of the starts, with 95% Wilson intervals)."""
    from bmil.evaluation.statistics import wilson_interval

    palm = palm_starts(model, result.starts)
    home = palm_starts(model, np.zeros((1, result.starts.shape[1])))[0]
    ok = result.success
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.5, 4.0), dpi=150)
    ax.scatter(*palm[~ok, :2].T, s=3, alpha=0.5, c="#bcbcbc", label="failure", rasterized=True)
    ax.scatter(*palm[ok, :2].T, s=3, alpha=0.5, c="tab:green", label="success", rasterized=True)
    ax.scatter(*home[:2], s=80, c="red", label="training start")
    ax.scatter(*OBJECT_POS[:2], s=80, c="orange", label="ball")
    ax.scatter(*TARGET_POS[:2], s=80, c="blue", label="target (z 0.25)")
    ax.set(xlabel="palm start x (m)", ylabel="palm start y (m)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=6)  # the palm starts fill the lower half

    distance = 100 * np.linalg.norm(palm - home, axis=1)
    edges = np.unique(np.quantile(distance, np.linspace(0, 1, 11)))
    bins = np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, len(edges) - 2)
    centre, rate, low, high = [], [], [], []
    for b in range(len(edges) - 1):
        inside = bins == b
        if inside.any():
            lo, hi = wilson_interval(int(ok[inside].sum()), int(inside.sum()))
            centre.append(distance[inside].mean())
            rate.append(100 * ok[inside].mean())
            low.append(100 * lo)
            high.append(100 * hi)
    errors = np.maximum(0, [np.subtract(rate, low), np.subtract(high, rate)])  # rounding can dip below 0
    ax2.errorbar(centre, rate, yerr=errors, marker="o", capsize=2)
    ax2.set(xlabel="palm start distance from the training start (cm)", ylabel="success (%)", ylim=(-2, 102))
    ax2.grid(alpha=0.3)
    lo, hi = result.ci
    fig.suptitle(f"{title} robustness {100 * result.rate:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]", fontsize=9)
    fig.tight_layout()
    return fig
