"""The paper's Figure 4 for the mazes (a per-cell heatmap) and its text rendering."""

from __future__ import annotations

import numpy as np

from bmil.plots import plt


def _cell_grid(result, layout) -> np.ndarray:
    """Per-cell success rates on the maze grid (NaN on walls and cells without episodes)."""
    grid = np.full(layout.walls.shape, np.nan)
    rates = result.group_rates()
    grid[layout.free_cells[:, 0], layout.free_cells[:, 1]] = rates
    return grid


def maze_heatmap(result, layout, demos=None, title: str = ""):
    """The paper's Figure 4: every free cell coloured by its success rate (viridis, 0-1, value
    printed), walls dark, the start cell outlined in red, the goal in orange, optional demo paths.

    Drawn in the env's x/y coordinates with row 0 at the bottom, as the paper's figure."""
    from matplotlib.patches import Circle, Rectangle

    grid = _cell_grid(result, layout)
    s, rows, cols = layout.scaling, layout.n_rows, layout.n_cols
    extent = (-cols * s / 2, cols * s / 2, -rows * s / 2, rows * s / 2)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * cols, 0.6 + 0.45 * rows), dpi=150)
    ax.imshow(np.where(layout.walls, 1.0, np.nan), cmap="Greys", vmin=0, vmax=1.6, extent=extent)
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, extent=extent)
    for (i, j), (x, y) in zip(layout.free_cells, layout.cell_centre(layout.free_cells)):
        if not np.isnan(grid[i, j]):
            ax.text(x, y, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if grid[i, j] < 0.6 else "black")
    sx, sy = layout.cell_centre(layout.start_cell) - s / 2
    ax.add_patch(Rectangle((sx, sy), s, s, fill=False, ec="red", lw=2, label="start cell"))
    gx, gy = layout.cell_centre(layout.goal_cell)
    if layout.goal_quadrant is None:
        ax.add_patch(Circle((gx, gy), 0.6, fc="orange", ec="orange", label="goal (r 0.6)"))
    else:
        qx, qy = layout.goal_quadrant
        corner = (gx + min(qx, 0) * s / 2, gy + min(qy, 0) * s / 2)
        ax.add_patch(Rectangle(corner, s / 2, s / 2, fill=False, ec="orange", lw=2, hatch="//",
                               label="goal region"))
    if demos is not None:
        obs, episode = np.asarray(demos["obs"]), np.asarray(demos["episode"])
        for k in np.unique(episode):
            xy = obs[episode == k, :2]
            ax.plot(*xy.T, color="white", lw=0.5, alpha=0.7, label="demos" if k == episode[0] else None)
    ax.set(xlim=extent[:2], ylim=extent[2:], xticks=[], yticks=[])
    ax.invert_yaxis()  # row 0 at the bottom, as the paper draws its mazes
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="success rate")
    lo, hi = result.ci
    ax.set_title(f"{title} robustness {100 * result.rate:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
                 fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.01), ncol=3, fontsize=6, facecolor="0.45")  # grey: white demo lines show
    fig.tight_layout()
    return fig


def maze_text_grid(result, layout) -> str:
    """The per-cell rates as text, in the figure's orientation (row 0 at the bottom)."""
    grid = _cell_grid(result, layout)
    lines = ["per-cell success % (### wall, S start cell, G goal cell; row 0 at the bottom):",
             "     " + "".join(f"{j:>5}" for j in range(layout.n_cols))]
    for i in reversed(range(layout.n_rows)):
        cells = []
        for j in range(layout.n_cols):
            if layout.walls[i, j]:
                cells.append("  ###")
                continue
            mark = "S" if (i, j) == tuple(layout.start_cell) else "G" if (i, j) == tuple(layout.goal_cell) else " "
            value = "  -" if np.isnan(grid[i, j]) else f"{100 * grid[i, j]:3.0f}"
            cells.append(f" {value}{mark}")
        lines.append(f"{i:>5}" + "".join(cells))
    return "\n".join(lines)
