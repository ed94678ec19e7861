"""A tune's checks before any work: its ``--space`` names methods and settings that exist, its
folder is owned by one driver, and its journal holds one task."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import optuna

from bmil.errors import BMILError
from bmil.lightning_cli import fit_settings
from bmil.methods import get_method, registered
from bmil.runs.run import settings_hash

LOCK = "tune.lock"  # held by the driver while it runs, its pid inside


def check_space(tuner) -> None:
    """Before any work: every method ``--space`` names is one, and every setting it adds or narrows
    is one of that method's fit (a typo would otherwise surface as a failed trial)."""
    strangers = [m for m in (tuner.space or {}) if m not in registered()]
    if strangers:
        raise BMILError(f"--space: {', '.join(map(repr, strangers))} names no method; its top-level keys are "
                        f"methods ({', '.join(registered())}).")
    for method in tuner.methods:
        changes = (tuner.space or {}).get(method) or {}
        settings = fit_settings([*tuner.config_args(), "--model", get_method(method).class_path]) if changes else {}
        for key, change in changes.items():
            if change is not None and not names_a_setting(settings, key):
                raise BMILError(f"--space: {method}'s '{key}' is no setting of its fit (bmil fit --help lists "
                                "them, e.g. model.policy.lr).")


@contextlib.contextmanager
def owned(out: Path):
    """One driver owns a tune's folder while it runs: a second one on the same --out is refused,
    naming the first (its pid is in the lock file)."""
    path = out / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BMILError(f"{out} is being tuned by another bmil tune (pid {path.read_text().strip() or '?'}); "
                        "wait for it to end or stop it, or give another --out.") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def task_identity(tuner, storage) -> str:
    """The task's identity (a hash of what the config resolves to), which every method's study in
    the journal records: a rerun on the same --out with other settings is refused before any work."""
    identity = settings_hash(tuner.base)
    for summary in optuna.get_all_study_summaries(storage):
        found = summary.user_attrs.get("task")
        if found not in (None, identity):
            raise BMILError(f"{tuner.out} holds a tune of another task: its studies were made with settings "
                            f"{found}, this config resolves to {identity} (a config layer or setting differs). "
                            "Give another --out, or the configs of that tune.")
    return identity


def names_a_setting(settings: dict, key: str) -> bool:
    """Whether a dotted key (``model.policy.lr``, ``trainer.max_epochs``) is in resolved fit settings."""
    node = settings
    for part in key.split("."):
        if isinstance(node, dict) and part not in node and isinstance(node.get("init_args"), dict):
            node = node["init_args"]
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
