"""The paper's Figure 3 for Fetch: gripper start positions coloured by outcome."""

from __future__ import annotations

from bmil.plots import plt


def fetch_scatter(result, gripper_xy, object, goal, title: str = ""):
    """The paper's Figure 3: gripper start positions coloured by outcome, with the task marked."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=150)
    xy, ok = result.starts, result.success
    ax.scatter(*xy[~ok].T, s=2, alpha=0.5, c="#bcbcbc", label="failure", rasterized=True)
    ax.scatter(*xy[ok].T, s=2, alpha=0.5, c="tab:green", label="success", rasterized=True)
    ax.scatter(*gripper_xy, s=100, alpha=0.7, c="red", label="training start")
    ax.scatter(*object[:2], s=100, alpha=0.7, c="orange", label="object")
    ax.scatter(*goal[:2], s=100, alpha=0.7, c="blue", label="goal")
    ax.set(xlim=(1.15, 1.55), ylim=(0.55, 0.95), xlabel="gripper x (m)", ylabel="gripper y (m)")
    ax.set_aspect("equal")
    lo, hi = result.ci
    ax.set_title(f"{title} robustness {100 * result.rate:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]")
    legend = ax.legend(loc="lower right", fontsize=6)
    for handle in legend.legend_handles:
        handle.set_sizes([20])
    fig.tight_layout()
    return fig
