"""How many CCIL labels survive its filters on a domain's demos, per Lipschitz bound and distance
filter (docs/baselines.md). Run: python docs/probes/ccil_label_yield.py pickplace 10"""
import dataclasses
import sys

import torch

from bmil.methods import CCIL
from bmil.methods.ccil import CCILSettings, corrective_labels, lipschitz_penalty


def main(env: str, num: int) -> None:
    for bound in (0.5, 1.0, 3.0, 10.0):
        cfg = CCILSettings(lipschitz=bound)
        method = CCIL(env=env, demos={"num": num}, ccil=cfg)
        method.setup("fit")
        obs, action, next_obs = method.demo_rows_at(slice(None))
        optimizer, generator = torch.optim.Adam(method.dynamics.parameters(), lr=cfg.model_lr), torch.Generator().manual_seed(0)
        for _ in range(cfg.model_steps):  # as CCIL.train_dynamics, without a Trainer
            idx = torch.randint(len(obs), (cfg.model_batch_size,), generator=generator)
            loss = method.dynamics.loss(obs[idx], action[idx], next_obs[idx]) + cfg.lipschitz_weight * lipschitz_penalty(
                method.dynamics.net, method.dynamics.inputs(obs[idx], action[idx]), bound, cfg.lipschitz_eps, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for distance in (2.0, 5.0):
            settings = dataclasses.replace(cfg, max_distance=distance)
            counts = corrective_labels(method.state_change, obs, action, next_obs, settings, torch.Generator().manual_seed(0))[2]
            print(f"lipschitz {bound}, max_distance {distance}: {len(obs)} transitions, {counts}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
