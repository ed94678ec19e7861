"""The one place a domain name is resolved.

A registry entry maps a name to the import path of a zero-argument factory ("package.module:attr"),
so nothing is imported until a domain is used. A user's own domain reaches every process (the
evaluation workers too) without registration code running there in three ways: its factory's
import path given as the name, an installed package's entry point in the group ``bmil.domains``
(``[project.entry-points."bmil.domains"] mytask = "mypkg.domain:factory"``), or a gymnasium
environment described by configuration (a ``GymEnvSpec``, bmil/domains/from_gym.py).
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Callable, Union

from bmil.domains.base import Domain
from bmil.errors import BMILError
from bmil.loading import import_object

Factory = Union[str, Callable[[], Domain]]

_FACTORIES: dict[str, Factory] = {
    "push": "bmil.domains.fetch.domain:push",
    "pickplace": "bmil.domains.fetch.domain:pickplace",
    "relocate": "bmil.domains.adroit.domain:relocate",
    "relocate_object_noise": "bmil.domains.adroit.domain:relocate_object_noise",
    **{f"{agent}_{maze}{suffix}": f"bmil.domains.maze.domain:{agent}_{maze}{suffix}"
       for agent in ("point", "ant") for maze in ("umaze", "room5x11", "corridor7x7") for suffix in ("", "_time")},
}
_INSTANCES: dict[str, Domain] = {}


def register_domain(name: str, factory: Factory) -> None:
    """Make ``name`` resolve to ``factory()``: a zero-argument callable returning a ``Domain``, or
    its import path "package.module:attr" (prefer the path: it also resolves in worker processes)."""
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def domain_names() -> list[str]:
    return sorted({*_FACTORIES, *_entry_points()})


def get_domain(env) -> Domain:
    """The domain registered as ``env`` (or built by the import path ``env``, or from a gymnasium
    environment's ``GymEnvSpec`` or its dict), built once per process."""
    if not isinstance(env, str):
        return _configured(env)
    if env not in _INSTANCES:
        factory = _FACTORIES.get(env) or _entry_points().get(env)
        if factory is None and ":" not in env:
            raise _unknown(env)
        domain = _import(factory or env)()
        if not isinstance(domain, Domain):
            raise BMILError(f"'{env}' made a {type(domain).__name__}, not a bmil.domains.Domain.")
        _INSTANCES[env] = domain
    return _INSTANCES[env]


def _configured(env) -> Domain:
    from bmil.domains.from_gym import GymDomain, spec_key, spec_of

    spec = spec_of(env)
    key = spec_key(spec)
    if key not in _INSTANCES:
        _INSTANCES[key] = GymDomain(spec)
    return _INSTANCES[key]


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group="bmil.domains")}


def _import(factory: Factory) -> Callable[[], Domain]:
    if callable(factory):
        return factory
    try:
        return import_object(factory)
    except ImportError as e:
        raise BMILError(f"Cannot import the domain factory '{factory}' ({e}). Give it as "
                        "'package.module:factory', importable from this Python environment.") from None


def _unknown(name: str) -> BMILError:
    close = difflib.get_close_matches(str(name), domain_names(), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return BMILError(f"Unknown environment '{name}'.{hint} Known environments: {', '.join(domain_names())} "
                     "(or a factory's import path, 'package.module:factory'). Any gymnasium environment "
                     f"is given by its settings instead of a name: model.env: {{id: {name}, ...}} "
                     "(docs/your-own-task.md).")
