"""The configs bmil ships, found by name from any folder.

They are the repository's ``conf/``, which the installed package carries as ``bmil/conf`` (in the
checkout a link to it). A ``--config`` value is a file where one is there, else a shipped config's
name: ``pickplace``, ``bc``, ``examples/pointmaze_umaze`` or ``overlays/maze_quick`` (the same with
``.yaml``, or with ``conf/`` before it, as the docs write them from the checkout).
"""

from __future__ import annotations

import re
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "conf"


def shipped_path(name: str) -> Path | None:
    """The shipped config that ``name`` names, if any. ``conf/<name>`` names one only where the
    current folder has no ``conf/`` (a missing file in your own ``conf/`` is an error, not ours)."""
    name = name.removeprefix("./")
    if not Path("conf").is_dir():
        name = name.removeprefix("conf/")
    path = SHIPPED / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return path if path.is_file() else None


def resolve(value: str) -> str:
    """The file a ``--config`` value means: the path where it is a file, else the shipped config of
    that name, else the value as given (the caller says that it is not found)."""
    if Path(value).is_file():
        return value
    shipped = shipped_path(value)
    return str(shipped) if shipped else value


def as_files(args: list[str]) -> list[str]:
    """Command-line ``args`` with each --config (-c) value that names a shipped config as its file."""
    out = list(args)
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve(arg.split("=", 1)[1])
        elif i and args[i - 1] in ("--config", "-c"):
            out[i] = resolve(arg)
    return out


def folder(value: str) -> str:
    """A folder of configs (``bmil reproduce --configs``): the path where it is a folder, else the
    shipped configs for the default ``conf``."""
    return value if Path(value).is_dir() or value not in ("conf", "conf/") else str(SHIPPED)


def names() -> list[str]:
    """Every shipped config's name, e.g. ``pickplace`` or ``overlays/maze_quick``."""
    return sorted(str(p.relative_to(SHIPPED).with_suffix("")) for p in SHIPPED.rglob("*.yaml"))


def summary(name: str, width: int = 80) -> str:
    """The first sentence of a shipped config's opening comment, at most ``width`` characters."""
    comment = []
    for line in shipped_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    text = " ".join(comment)
    sentence = re.split(r"\.\s+(?=[A-Z`(])", text)[0].rstrip(".")  # (not at "et al. 2020")
    return sentence if len(sentence) <= width else sentence[:width - 3].rstrip() + "..."
