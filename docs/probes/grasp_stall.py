"""Where a PickAndPlace policy fails (docs/stability.md): roll the best and last checkpoints of a
run from the training start and print, every few steps, the gripper command, the finger opening,
the block's height and the gripper-block distance; then, at the state where the last policy ends
up, the gripper labels of the nearest demo rows and trace rows.

    python docs/probes/grasp_stall.py results/.../runs/pickplace__BMIL__s3/version_0
(needs the run's checkpoints/, which study records in git do not keep)
"""

import sys

import numpy as np
import torch

from bmil.demos import load_demos
from bmil.methods import BMIL


def rollout(module, steps=50):
    env, policy = module.domain.make_env(), module.agent().eval()
    obs, info = env.reset()  # the training start
    rows = []
    for t in range(steps):
        with torch.no_grad():
            action = policy(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        # Fetch observation: gripper xyz 0:3, block xyz 3:6, block - gripper 6:9, fingers 9:11
        rows.append((t, action[3], obs[9] + obs[10], obs[5], float(np.linalg.norm(obs[6:9]))))
        obs, _, _, _, info = env.step(action)
    return rows, obs, bool(info["is_success"])


def nearest_labels(name, states, actions, at, scale, k=20):
    dist = ((states - at) / scale).norm(dim=1)
    idx = dist.argsort()[:k]
    closing = int((actions[idx, 3] < 0).sum())
    print(f"{name}: {k} nearest rows at standardised distance {dist[idx[0]]:.2f}-{dist[idx[-1]]:.2f}, "
          f"{closing} of {k} labelled 'close'")


def main(run: str) -> None:
    torch.set_num_threads(1)
    for tag in ("best", "last"):
        module = BMIL.load_from_checkpoint(f"{run}/checkpoints/{tag}.ckpt", map_location="cpu", weights_only=False)
        rows, end, success = rollout(module)
        print(f"{tag}: success {success}")
        for t, grip, width, z, dist in rows[::3]:
            print(f"  t={t:2d} gripper command {grip:+.2f} opening {width:.3f} block z {z:.3f} distance {dist:.3f}")
    demos, _ = load_demos(module.demo_path, env="pickplace")
    traces = torch.load(f"{run}/checkpoints/last.ckpt", weights_only=False)["bmil"]["buffer"]
    trace_obs, trace_action = (_find(traces, key) for key in ("obs", "action"))
    end = torch.as_tensor(end, dtype=torch.float32)
    scale = demos["obs"].std(0) + 1e-3
    nearest_labels("demo", demos["obs"], demos["action"], end, scale)
    nearest_labels("trace (last epoch)", trace_obs, trace_action, end, scale)


def _find(tree, key):
    """The tensor stored under ``key`` anywhere in the trace buffer's state."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            found = v if (k == key and torch.is_tensor(v)) else _find(v, key)
            if found is not None:
                return found
    return None


if __name__ == "__main__":
    main(sys.argv[1])
