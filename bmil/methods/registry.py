"""The method registry: each method declares, where it is defined, the name studies, the tuner and
the command line know it by, its config layer over a domain's config and whether ``bmil tune``
searches it (``@register``). Importing ``bmil.methods`` registers the built-in ones; a method of
your own registers when its module is imported: by its ``class_path`` in a config, by its import
path given as its name (``--methods mypkg.methods:MyMethod``), or by an installed package's entry
point in the group ``bmil.methods`` (``[project.entry-points."bmil.methods"] mine = "mypkg.methods:MyMethod"``)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from bmil.errors import BMILError
from bmil.loading import import_object


@dataclass(frozen=True)
class Method:
    name: str  # bmil, bc, noise_bc, ...
    cls: type
    config: str = ""  # its layer over conf/<domain>.yaml, in the configs folder ("{domain}" is filled in); "": none
    tunable: bool = False  # bmil tune searches it (it declares a search_space)

    @property
    def label(self) -> str:
        """Its name in tables and messages: the class's (BMIL, NoiseBC)."""
        return self.cls.__name__

    @property
    def class_path(self) -> str:
        """What ``--model`` takes. The built-in methods go by the package that exports them
        (bmil.methods.BC), as every recorded run's settings name them."""
        module = self.cls.__module__
        if module.startswith("bmil.methods."):
            return f"bmil.methods.{self.cls.__name__}"
        return f"{module}.{self.cls.__qualname__}"

    def config_layer(self, domain: str) -> tuple[str, ...]:
        return (self.config.format(domain=domain),) if self.config else ()


_METHODS: dict[str, Method] = {}


def register(name: str, config: str = "", tunable: bool = False):
    """Class decorator: register a method under ``name``."""

    def add(cls: type) -> type:
        known = _METHODS.get(name)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise BMILError(f"two methods are registered as '{name}': {known.class_path} and "
                            f"{cls.__module__}.{cls.__qualname__}; give one another name.")
        _METHODS[name] = Method(name, cls, config, tunable)
        return cls

    return add


def registered() -> dict[str, Method]:
    """Every registered method by name, in the order they registered."""
    return dict(_METHODS)


def get_method(name: str, option: str = "method") -> Method:
    """The method registered as ``name`` (imported first where ``name`` is an import path or an entry
    point's name), or one error naming those there are."""
    if name not in _METHODS:
        path = _entry_points().get(name) or (name if ":" in name else None)
        if path is None:
            raise BMILError(f"{option}: unknown method '{name}'; known: {', '.join(_METHODS)} (or a method's import "
                            "path, 'package.module:Class').")
        try:
            cls = import_object(path)
        except ImportError as e:
            raise BMILError(f"{option}: cannot import the method '{path}' ({e}).") from None
        known = next((m for m in _METHODS.values() if m.cls is cls), None)
        if known is None:
            raise BMILError(f"{option}: '{path}' is not a registered method: decorate its class with "
                            "@bmil.methods.register(name, config=...).")
        return known
    return _METHODS[name]


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group="bmil.methods")}


def method_of(class_path: str) -> Method | None:
    """The registered method a ``model.class_path`` names, or None."""
    return next((m for m in _METHODS.values() if class_path in (m.class_path, f"{m.cls.__module__}.{m.cls.__qualname__}")), None)
