"""Maze geometry: the original's maps (RegionUMaze, WallRoom5x11, Corridor7x7; docs/original-code.md),
cells <-> coordinates, the goal test and the shortest-path tree the expert follows.

Coordinates are gymnasium-robotics' (map centred on the origin, x to the right along columns, y
*down* the rows).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

GOAL_RADIUS = 0.6  # success radius around a goal point (the original's, absolute units)
WALL_MARGIN = 1.0  # robustness starts keep this far from a wall side of their cell (the original's)

# Maps, rows top to bottom (row index grows down; B wall, . free, R start, G goal cell).
MAPS = {
    "umaze": ["BBBBB",
              "BR..B",
              "B...B",
              "BBB.B",
              "B...B",
              "BG..B",
              "BBBBB"],
    "room5x11": ["BBBBBBBBBBBBB",
                 "B.....B.....B",
                 "B.....B.....B",
                 "BR.........GB",
                 "B.....B.....B",
                 "B.....B.....B",
                 "BBBBBBBBBBBBB"],
    "corridor7x7": ["BBBBBBBBB",
                    "BR.B....B",
                    "B..B....B",
                    "B.....BBB",
                    "B.......B",
                    "BBB.....B",
                    "B....B..B",
                    "B....B.GB",
                    "BBBBBBBBB"],
}


@dataclass
class MazeLayout:
    """Geometry of a maze: walls, cell <-> coordinates, start, goal, success test, shortest paths.

    ``goal_quadrant`` (UMaze) makes the goal the quarter of the goal cell towards (sx, sy) from its
    centre, e.g. (-1, -1): x <= cx and y <= cy (the original's region x <= 0, y >= 32 in its
    y-up frame). Otherwise success is within ``GOAL_RADIUS`` of the goal cell's centre.
    """

    rows: list[str]
    scaling: float
    goal_quadrant: tuple[int, int] | None = None
    walls: np.ndarray = field(init=False)

    def __post_init__(self):
        self.walls = np.array([[c == "B" for c in r] for r in self.rows])
        self.n_rows, self.n_cols = self.walls.shape
        self.start_cell = self._find("R")
        self.goal_cell = self._find("G")
        # Free cells in row-major order; their index is the "cell id" of per-cell evaluations.
        self.free_cells = np.argwhere(~self.walls)
        self.cell_ids = -np.ones(self.walls.shape, dtype=np.int64)
        self.cell_ids[~self.walls] = np.arange(len(self.free_cells))
        self.next_cell = self._shortest_path_tree()

    def _find(self, char: str) -> np.ndarray:
        (cell,) = [(i, j) for i, r in enumerate(self.rows) for j, c in enumerate(r) if c == char]
        return np.array(cell)

    @property
    def maze_map(self) -> list[list[int]]:
        """The map in gymnasium-robotics' format (1 wall, 0 free)."""
        return self.walls.astype(int).tolist()

    # ---- coordinates (gymnasium-robotics' Maze.cell_rowcol_to_xy, vectorised) -------------------
    def cell_centre(self, cells: np.ndarray) -> np.ndarray:
        cells = np.asarray(cells, dtype=np.float64)
        x = (cells[..., 1] + 0.5) * self.scaling - self.n_cols * self.scaling / 2
        y = self.n_rows * self.scaling / 2 - (cells[..., 0] + 0.5) * self.scaling
        return np.stack([x, y], -1)

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """(row, col) of the cell containing each point."""
        xy = np.asarray(xy, dtype=np.float64)
        i = np.floor((self.n_rows * self.scaling / 2 - xy[..., 1]) / self.scaling)
        j = np.floor((xy[..., 0] + self.n_cols * self.scaling / 2) / self.scaling)
        cells = np.stack([i, j], -1).astype(np.int64)
        return np.clip(cells, 0, [self.n_rows - 1, self.n_cols - 1])

    def free_cell_of(self, xy: np.ndarray) -> np.ndarray:
        """Like ``cell_of``, but a point on the face of a wall counts in the free cell beside it."""
        cells = self.cell_of(xy)
        for nudge in ((0.2, 0), (-0.2, 0), (0, 0.2), (0, -0.2)):
            bad = self.walls[cells[:, 0], cells[:, 1]]
            if not bad.any():
                break
            cells[bad] = self.cell_of(np.asarray(xy)[bad] + nudge)
        return cells

    @property
    def goal_point(self) -> np.ndarray:
        """Where the expert heads: the goal point, or the centre of the goal quadrant."""
        centre = self.cell_centre(self.goal_cell)
        if self.goal_quadrant is None:
            return centre
        return centre + np.array(self.goal_quadrant) * self.scaling / 4

    def success(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        centre = self.cell_centre(self.goal_cell)
        if self.goal_quadrant is None:
            return np.linalg.norm(xy - centre, axis=-1) <= GOAL_RADIUS
        sx, sy = self.goal_quadrant
        return (sx * (xy[..., 0] - centre[0]) >= 0) & (sy * (xy[..., 1] - centre[1]) >= 0)

    def start_box(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) xy corners of a cell, shrunk by WALL_MARGIN on each side facing a wall."""
        i, j = cell
        centre, half = self.cell_centre(cell), self.scaling / 2
        low, high = centre - half, centre + half
        # Neighbours in x: columns j-1 (left, low x) / j+1; in y: rows i+1 (low y) / i-1.
        low[0] += WALL_MARGIN * self.walls[i, j - 1]
        high[0] -= WALL_MARGIN * self.walls[i, j + 1]
        low[1] += WALL_MARGIN * self.walls[i + 1, j]
        high[1] -= WALL_MARGIN * self.walls[i - 1, j]
        return low, high

    @property
    def xy_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Extent of the free space (inner faces of the outer walls)."""
        corners = self.cell_centre(self.free_cells)
        half = self.scaling / 2
        return corners.min(0) - half, corners.max(0) + half

    # ---- planning ----------------------------------------------------------------------------
    def _shortest_path_tree(self) -> np.ndarray:
        """next_cell[i, j]: the 4-neighbour one step closer to the goal cell (BFS from the goal);
        the goal cell points to itself, walls to (-1, -1)."""
        nxt = -np.ones((*self.walls.shape, 2), dtype=np.int64)
        goal = tuple(self.goal_cell)
        nxt[goal] = goal
        queue = deque([goal])
        while queue:
            i, j = queue.popleft()
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                n = (i + di, j + dj)
                if not self.walls[n] and nxt[n][0] < 0:
                    nxt[n] = (i, j)
                    queue.append(n)
        if (nxt[~self.walls] < 0).any():
            raise ValueError("every free cell must connect to the goal")
        return nxt


def make_layout(maze: str) -> MazeLayout:
    scaling = 8.0 if maze == "umaze" else 4.0
    return MazeLayout(MAPS[maze], scaling, goal_quadrant=(-1, -1) if maze == "umaze" else None)

