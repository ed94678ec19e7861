"""The one loader of objects named by import path (a domain factory, an environment entry point, a
checkpoint's method class). A leaf."""

from __future__ import annotations

import importlib


def import_object(path: str):
    """The object ``'package.module:name'`` (or ``'package.module.name'``) names; ImportError, with
    what went wrong, where it cannot be imported."""
    module, colon, name = path.partition(":")
    if not colon:
        module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ImportError(str(e) or f"no module or name in '{path}'") from None
