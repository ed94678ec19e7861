"""A run: one ``bmil fit`` of a study or a tune, defined by its configs, overrides and extra
arguments and seeded; its settings as the fit will resolve them, and their signature.

A run's signature is a hash of the settings its fit resolves to (LightningCLI's own parse of its
configs, overrides and extra arguments), so a finished run made with other settings is never mixed
into a study, while renaming or re-layering configs with the same settings keeps it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import yaml

from bmil.files import folder_name
from bmil.lightning_cli import computed_settings, fit_settings
from bmil.runs.folder import RunFolder


@dataclass(frozen=True)
class Run:
    """One ``bmil fit``: ``configs`` (the domain's, then the method's) plus ``overrides`` (what the
    study varies) plus ``extra`` (what the user adds, e.g. an evaluation overlay), seeded ``seed``."""

    domain: str
    method: str  # the row label in tables (BC, BMIL, SC(30), 5 demos, ...)
    seed: int
    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    x: Optional[float] = None  # the ablation's axis value (demos, budget multiplier), if any
    family: str = ""  # the line a run belongs to in a line plot (BC, BMIL); default: method
    extra: tuple[str, ...] = ()  # the user's extra ``bmil fit`` args for this run (--extra, --domain_extra)
    stage: str = ""  # what launched it, where that matters (a tune's trial, finalist or final run)
    tags: tuple[tuple[str, str], ...] = ()  # (name, value) pairs its launcher finds it by (a tune's method)

    @property
    def run_id(self) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in self.method).strip("_")
        return f"{folder_name(self.domain)}__{safe}__s{self.seed}"

    def folder(self, out: str | Path) -> RunFolder:
        return RunFolder.of(out, self.run_id)

    def fit_args(self) -> list[str]:
        """What defines the run, as ``bmil fit`` arguments (where its output goes is the launcher's)."""
        configs = [arg for c in self.configs for arg in ("--config", c)]
        return [*configs, *self.overrides, "--seed_everything", str(self.seed), *self.extra]

    @cached_property
    def settings(self) -> dict:
        """The settings the run's ``bmil fit`` will use, resolved (once) by LightningCLI's parser."""
        return fit_settings(self.fit_args())

    def settings_yaml(self) -> str:
        """The settings as the one config file the fit is started with, by every executor (less the
        names of the files they came from)."""
        settings = {k: v for k, v in self.settings.items() if k not in ("config", "ckpt_path")}
        return yaml.safe_dump(settings, sort_keys=False)

    @property
    def signature(self) -> str:
        """What makes a run's result: the settings its fit resolves to, less the names of the config
        files they came from."""
        return settings_hash(self.settings)

    def identity(self) -> dict:
        """What a study's record says of a run besides its outcomes (``result.json`` repeats it)."""
        record = {k: v for k, v in asdict(self).items() if k not in ("configs", "stage", "tags")}
        return {**record, "config": " ".join(self.configs), "overrides": " ".join(self.overrides),
                "run_id": self.run_id, "extra": shlex.join(self.extra)}


# Settings added to bmil after studies were recorded, at the values that behave as bmil did before
# they existed: left out of signatures there, so the records stay valid (and are never re-run).
_ADDED_SINCE_RECORDS = {
    ("validation", "after_epoch"): 0,  # (before the group's own entry, which compares the whole group)
    ("robustness", "test_last"): True,
    ("validation",): {"every_n_epochs": 0, "episodes": 200, "seed": 1, "success": "final", "workers": None},
    ("model", "init_args", "policy", "ema_decay"): 0.0,
    ("model", "init_args", "policy", "lr_decay_epochs"): 0,
    ("model", "init_args", "policy", "lr_decay_to"): 0.0,
    ("model", "init_args", "traces", "keep_epochs"): 1,
    ("model", "init_args", "traces", "demo_bounds_margin"): None,
    ("model", "init_args", "demos", "generate"): False,
    ("robustness", "videos"): 0,
}


def settings_hash(settings: dict) -> str:
    """The signature of resolved settings: what they compute, less the settings added since the
    records were made, at their neutral values."""
    settings = computed_settings(settings)
    for path, neutral in _ADDED_SINCE_RECORDS.items():
        *parents, key = path
        node = settings
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == neutral:
            del node[key]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
