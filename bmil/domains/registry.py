"""The one place a domain name is resolved.

A registry entry maps a name to the import path of a zero-argument factory ("package.module:attr"),
so nothing is imported until a domain is used. ``get_domain`` also takes an import path directly,
which is how a user's own domain reaches every process without registration code running there.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Union

from bmil.domains.base import Domain
from bmil.errors import BMILError

Factory = Union[str, Callable[[], Domain]]

_FACTORIES: dict[str, Factory] = {
    "push": "bmil.domains.fetch.domain:push",
    "pickplace": "bmil.domains.fetch.domain:pickplace",
    **{f"point_{maze}{suffix}": f"bmil.domains.maze.domain:point_{maze}{suffix}"
       for maze in ("umaze", "room5x11", "corridor7x7") for suffix in ("", "_time")},
}
_INSTANCES: dict[str, Domain] = {}


def register_domain(name: str, factory: Factory) -> None:
    """Make ``name`` resolve to ``factory()``: a zero-argument callable returning a ``Domain``, or
    its import path "package.module:attr" (prefer the path: it also resolves in worker processes)."""
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def domain_names() -> list[str]:
    return sorted(_FACTORIES)


def get_domain(name: str) -> Domain:
    """The domain registered as ``name`` (or built by the import path ``name``), built once."""
    if name not in _INSTANCES:
        factory = _FACTORIES.get(name)
        if factory is None and ":" not in str(name):
            raise _unknown(name)
        domain = _import(factory or name)()
        if not isinstance(domain, Domain):
            raise BMILError(f"'{name}' made a {type(domain).__name__}, not a bmil.domains.Domain.")
        _INSTANCES[name] = domain
    return _INSTANCES[name]


def _import(factory: Factory) -> Callable[[], Domain]:
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise BMILError(f"Cannot import the domain factory '{factory}' ({e}). Give it as "
                        "'package.module:factory', importable from this Python environment.") from None


def _unknown(name: str) -> BMILError:
    close = difflib.get_close_matches(str(name), _FACTORIES, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return BMILError(f"Unknown environment '{name}'.{hint} Known environments: {', '.join(domain_names())} "
                     "(or a factory's import path, 'package.module:factory').")
