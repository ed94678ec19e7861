"""Domains: everything task-specific (environment, start states, expert, figure), one package per
family (``fetch/``, ``maze/``), found by name through ``get_domain``.

Add a domain: subclass ``Domain`` and ``register_domain("name", "package.module:factory")``.
"""

import contextlib
import io

# gymnasium-robotics prints a notice about Adroit reward versions to stderr on import; it does not
# concern the envs we use and would confuse users of every command.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics  # noqa: F401  (registers the Fetch ids)

from bmil.domains.base import Domain  # noqa: E402
from bmil.domains.registry import domain_names, get_domain, register_domain  # noqa: E402

__all__ = ["Domain", "domain_names", "get_domain", "register_domain"]
