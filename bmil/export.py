"""A trained policy outside bmil: ``bmil export`` writes it as TorchScript with a JSON record of its
observation and action layout; ``bmil.load_policy`` gives it back as a plain callable.

    bmil export --ckpt_path runs/pickplace_quick/version_0/checkpoints/best.ckpt --out policy.pt
    policy = bmil.load_policy("policy.pt")      # needs torch only, not Lightning
    action = policy(observation)                # (obs_dim,) or (B, obs_dim) -> env actions

The TorchScript module holds everything between an observation and the env's action: the network,
VINS's value-based selection where the method acts so, and the rescaling from the policy's [-1, 1]
to the env's action bounds. The record (``policy.json`` beside ``policy.pt``) says where the policy
came from and what its inputs and outputs are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from bmil.errors import BMILError
from bmil.loading import import_object
from bmil.files import atomic_path

FORMAT = "bmil-policy/1"


class _Exported(nn.Module):
    """Observation (B, obs_dim) -> env action (B, act_dim), the acting network and the rescale."""

    def __init__(self, acting: nn.Module, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.acting = acting
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.rescale = bool((low != -1).any() or (high != 1).any())  # else the actions pass unchanged

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        unit = self.acting(obs)
        if self.rescale:
            return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)
        return unit


def export_policy(ckpt_path: str, out: str, weights_only: Optional[bool] = True) -> dict:
    """Write the checkpoint's acting policy to ``out`` (TorchScript) and its record beside it."""
    from bmil.checkpoint import verify_checkpoint
    from bmil.files import write_record

    saved = verify_checkpoint(ckpt_path)
    hparams = saved.get("hyper_parameters", {})
    method = _method_class(hparams.get("_class_path", ""), ckpt_path)
    module = method.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=weights_only)
    domain = module.domain
    acting = module.export_module().eval()
    low, high = _action_bounds(domain)
    try:
        scripted = torch.jit.script(_Exported(acting, low, high))
    except Exception as e:  # TorchScript's errors have no common base class
        raise BMILError(f"{type(module).__name__}'s acting policy cannot be exported as TorchScript "
                        f"({type(e).__name__}: {str(e).splitlines()[0]}).") from None
    out_path = Path(out)
    with atomic_path(out_path) as tmp:
        scripted.save(str(tmp))
    record = {
        "format": FORMAT,
        "method": hparams.get("_class_path", type(module).__name__),
        "domain": domain.name,
        "env": hparams.get("env"),
        "checkpoint": str(Path(ckpt_path).resolve()),
        "epochs": saved.get("epoch", -1) + 1,  # trained epochs (Lightning saves the 0-based epoch)
        "observation": {"dim": domain.obs_dim, "layout": observation_layout(domain)},
        "action": {"dim": domain.act_dim, "low": low.tolist(), "high": high.tolist()},
        "stochastic": bool(getattr(acting, "stochastic", False)),
        "versions": {"torch": torch.__version__},
    }
    write_record(record_path(out_path), record, indent=1)
    return record


def record_path(policy_path: Path) -> Path:
    return policy_path.with_suffix(".json")


def observation_layout(domain) -> list[list]:
    """[name, size] of each part of the observation, in order (the domain's, or a configured
    environment's observation keys)."""
    if domain.observation_layout:
        return [list(part) for part in domain.observation_layout]
    if domain.obs_keys:
        return [[key, size] for key, size in zip(domain.obs_keys, domain.obs_part_sizes)]
    return [["observation", domain.obs_dim]]


class LoadedPolicy:
    """An exported policy: ``policy(obs)`` maps one observation (obs_dim,) or a batch (B, obs_dim),
    numpy or torch, to env actions of the same batch shape, as a numpy array."""

    def __init__(self, module: torch.jit.ScriptModule, record: dict):
        self.module, self.record = module, record
        self.obs_dim, self.act_dim = record["observation"]["dim"], record["action"]["dim"]

    def reset(self, seed: int = 0) -> None:
        """Seed the action noise of a stochastic policy (VINS's candidate search)."""
        torch.manual_seed(seed)

    @torch.no_grad()
    def __call__(self, obs) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.ndim == 1
        x = x[None] if single else x
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise BMILError(f"this policy takes observations of {self.obs_dim} numbers "
                            f"({self.record['observation']['layout']}); got shape {tuple(np.shape(obs))}.")
        action = self.module(x).numpy()
        return action[0] if single else action


def load_policy(path: str | Path) -> LoadedPolicy:
    """The policy ``bmil export`` wrote at ``path`` (with its record beside it)."""
    path = Path(path)
    if not path.is_file():
        raise BMILError(f"Exported policy '{path}' not found; write one with: bmil export --ckpt_path <ckpt> "
                        f"--out {path}")
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BMILError(f"The record of '{path}' ({record_path(path)}) is missing or corrupt ({e}); export "
                        "the policy again.") from None
    if record.get("format") != FORMAT:
        raise BMILError(f"'{path}' is format {record.get('format')}, this bmil reads {FORMAT}; export it again.")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises several types for unreadable archives
        raise BMILError(f"'{path}' is not a readable TorchScript policy ({type(e).__name__}); export it again.") from None
    return LoadedPolicy(module.eval(), record)


def _method_class(class_path: str, ckpt_path: str):
    try:
        return import_object(class_path)
    except ImportError:
        raise BMILError(f"'{ckpt_path}' names no importable method ('{class_path}'); export checkpoints that "
                        "bmil fit wrote.") from None


def _action_bounds(domain) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = domain.action_scale.bounds(domain.act_dim)
    return torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
