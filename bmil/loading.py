"""The one loader of objects named by import path (a domain factory, an environment entry point, a
checkpoint's method class). A leaf."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def import_object(path: str):
    """The object ``'package.module:name'`` (or ``'package.module.name'``) names; ImportError, with
    what went wrong, where it cannot be imported."""
    module, colon, name = path.partition(":")
    if not colon:
        module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        raise ImportError(f"{e}{unsearched_folder_hint(e.name)}") from None
    except (ImportError, AttributeError, ValueError) as e:
        raise ImportError(str(e) or f"no module or name in '{path}'") from None


def unsearched_folder_hint(module: str | None) -> str:
    """Where the missing top-level ``module`` is a file or package in the current folder that Python
    does not search (the ``bmil`` command's ``sys.path`` holds its own folder, not the current one,
    unlike ``python -m``): how to have it found. Evaluation workers get this process's ``sys.path``,
    so what this process imports, they import too."""
    here = Path.cwd()
    if not module or "." in module:
        return ""
    found = next((f for f in (f"{module}.py", f"{module}/") if (here / f).exists()), None)
    if found is None or any(Path(p or ".").resolve() == here.resolve() for p in sys.path):
        return ""  # not there, or the folder is searched: something else is wrong
    return (f"; {found} is in the current folder, which this command does not search: run it with "
            "PYTHONPATH=. or install the module")
