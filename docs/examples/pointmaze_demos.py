"""Demonstrations of a task bmil does not ship, as a user would bring them: a small waypoint
controller drives gymnasium-robotics' PointMaze_UMaze-v3 from the bottom-left cell to the top-left
goal, and the episodes are saved as a Minari dataset (docs/your-own-task.md).

    python docs/examples/pointmaze_demos.py --out-id pointmaze/umaze-bmil-v0 --episodes 10

Minari writes under MINARI_DATASETS_PATH (default ~/.minari/datasets).
"""

from __future__ import annotations

import argparse
import warnings

import gymnasium as gym
import gymnasium_robotics
import numpy as np

gym.register_envs(gymnasium_robotics)

ENV_ID = "PointMaze_UMaze-v3"
START, GOAL = [3, 1], [1, 1]  # (row, column) cells of the U: bottom-left to top-left
ROUTE = [(3, 3), (2, 3), (1, 3), (1, 1)]  # the cells the controller steers through, in order


def make_env() -> gym.Env:
    return gym.make(ENV_ID, continuing_task=False, max_episode_steps=300)


def controller_episode(env: gym.Env, seed: int) -> dict:
    """One episode of the waypoint controller (a PD law on the point's force), as Minari's buffer."""
    obs, _ = env.reset(seed=seed, options={"reset_cell": np.array(START), "goal_cell": np.array(GOAL)})
    maze = env.unwrapped.maze
    waypoints = [maze.cell_rowcol_to_xy(np.array(cell)) for cell in ROUTE[:-1]] + [obs["desired_goal"]]
    rng = np.random.default_rng(seed)
    gain = rng.uniform(8.0, 12.0)  # seeded variety between demonstrations
    record = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    target = 0
    for _ in range(300):
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


def write_minari(dataset_id: str, episodes: int, seed: int = 0) -> int:
    """Write ``episodes`` successful controller episodes as a Minari dataset; returns the attempts."""
    import minari

    warnings.filterwarnings("ignore", module="minari")  # its reminders to fill in author, permalink, ...
    from minari.data_collector import EpisodeBuffer

    env, buffers, attempts = make_env(), [], 0
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
    minari.create_dataset_from_buffers(dataset_id, buffers, env=make_env(), algorithm_name="waypoint controller")
    return attempts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-id", default="pointmaze/umaze-bmil-v0")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tries = write_minari(args.out_id, args.episodes, args.seed)
    print(f"wrote {args.episodes} demonstrations ({tries} controller episodes) as Minari dataset {args.out_id}")
