"""Demonstrations of a task bmil does not ship, as a user would bring them: a small waypoint
controller drives gymnasium-robotics' PointMaze_UMaze-v3 from the bottom-left cell to the top-left
goal (or, with --maze medium or large, PointMaze_Medium-v3 or PointMaze_Large-v3 from the
bottom-left cell to the top-right one, along the shortest path through the cells), and the
episodes are saved as a Minari dataset (docs/your-own-task.md).

    python -m bmil.examples.pointmaze_demos --out-id pointmaze/umaze-bmil-v0 --episodes 10
    python -m bmil.examples.pointmaze_demos --maze medium --out-id pointmaze/medium-bmil-v0 --episodes 20
    python -m bmil.examples.pointmaze_demos --maze large --out-id pointmaze/large-bmil-v0 --episodes 20

Minari writes under MINARI_DATASETS_PATH (default ~/.minari/datasets).
"""

from __future__ import annotations

import argparse
import warnings

import gymnasium as gym
import gymnasium_robotics
import numpy as np

gym.register_envs(gymnasium_robotics)

# (env id, steps per episode, start cell, goal cell), cells as (row, column).
MAZES = {"umaze": ("PointMaze_UMaze-v3", 300, (3, 1), (1, 1)),  # the U: bottom-left to top-left
         "medium": ("PointMaze_Medium-v3", 600, (6, 1), (1, 6)),  # the 8x8 maze: bottom-left to top-right
         "large": ("PointMaze_Large-v3", 800, (7, 1), (1, 10))}  # the 12x9 maze: bottom-left to top-right
ROUTES = {"umaze": [(3, 3), (2, 3), (1, 3), (1, 1)]}  # the UMaze's cells, as its demos were first made


def make_env(maze: str = "umaze") -> gym.Env:
    env_id, steps, _, _ = MAZES[maze]
    return gym.make(env_id, continuing_task=False, max_episode_steps=steps)


def route(maze_map, start, goal) -> list[tuple[int, int]]:
    """The corners of the shortest path through free cells from ``start`` to ``goal`` (breadth
    first), then the goal: the cells the controller steers through."""
    parent, frontier = {tuple(start): None}, [tuple(start)]
    while frontier:
        cell = frontier.pop(0)
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (cell[0] + dr, cell[1] + dc)
            if maze_map[nxt[0]][nxt[1]] == 0 and nxt not in parent:
                parent[nxt] = cell
                frontier.append(nxt)
    path, cell = [], tuple(goal)
    while cell is not None:
        path.append(cell)
        cell = parent[cell]
    path.reverse()
    corners = [b for a, b, c in zip(path, path[1:], path[2:]) if (b[0] - a[0], b[1] - a[1]) != (c[0] - b[0], c[1] - b[1])]
    return [*corners, tuple(goal)]


def controller_episode(env: gym.Env, seed: int) -> dict:
    """One episode of the waypoint controller (a PD law on the point's force), as Minari's buffer."""
    maze_name = next(name for name, m in MAZES.items() if m[0] == env.spec.id)
    _, steps, start, goal = MAZES[maze_name]
    obs, _ = env.reset(seed=seed, options={"reset_cell": np.array(start), "goal_cell": np.array(goal)})
    maze = env.unwrapped.maze
    cells = ROUTES.get(maze_name) or route(maze.maze_map, start, goal)
    waypoints = [maze.cell_rowcol_to_xy(np.array(cell)) for cell in cells[:-1]] + [obs["desired_goal"]]
    rng = np.random.default_rng(seed)
    gain = rng.uniform(8.0, 12.0)  # seeded variety between demonstrations
    record = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    target = 0
    for _ in range(steps):
        position, velocity = obs["observation"][:2], obs["observation"][2:]
        if target < len(waypoints) - 1 and np.linalg.norm(waypoints[target] - position) < 0.35:
            target += 1
        action = np.clip(gain * (waypoints[target] - position) - 1.0 * velocity, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                           ("terminations", terminated), ("truncations", truncated)):
            record[key].append(value)
        if terminated or truncated:
            break
    record["success"] = bool(info["success"])
    return record


def write_minari(dataset_id: str, episodes: int, seed: int = 0, maze: str = "umaze") -> int:
    """Write ``episodes`` successful controller episodes as a Minari dataset; returns the attempts."""
    import minari

    warnings.filterwarnings("ignore", module="minari")  # its reminders to fill in author, permalink, ...
    from minari.data_collector import EpisodeBuffer

    env, buffers, attempts = make_env(maze), [], 0
    while len(buffers) < episodes:
        record = controller_episode(env, seed + attempts)
        attempts += 1
        if not record.pop("success"):
            continue
        observations = {k: np.stack([o[k] for o in record["observations"]]) for k in record["observations"][0]}
        buffers.append(EpisodeBuffer(id=len(buffers), observations=observations,
                                     actions=np.stack(record["actions"]), rewards=np.array(record["rewards"]),
                                     terminations=np.array(record["terminations"]),
                                     truncations=np.array(record["truncations"])))
    minari.create_dataset_from_buffers(dataset_id, buffers, env=make_env(maze), algorithm_name="waypoint controller")
    return attempts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-id", default="pointmaze/umaze-bmil-v0")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--maze", choices=sorted(MAZES), default="umaze")
    args = parser.parse_args()
    tries = write_minari(args.out_id, args.episodes, args.seed, args.maze)
    print(f"wrote {args.episodes} demonstrations ({tries} controller episodes) as Minari dataset {args.out_id}")
