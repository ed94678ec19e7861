"""bmil: Backwards Model-based Imitation Learning (Park & Wong, NeurIPS 2022). The command is
``bmil`` (bmil/cli.py); from Python, ``bmil.load_policy`` loads a policy ``bmil export`` wrote."""

from bmil.numerics import pin as _pin_numerics

# Before anything loads torch: the numeric code paths that make runs portable across CPUs.
_pin_numerics()


def __getattr__(name: str):
    if name == "load_policy":  # imported on use: `import bmil` stays light
        from bmil.export import load_policy

        return load_policy
    raise AttributeError(f"module 'bmil' has no attribute '{name}'")
