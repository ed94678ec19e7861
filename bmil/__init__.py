"""bmil: Backwards Model-based Imitation Learning (Park & Wong, NeurIPS 2022). The command is
``bmil`` (bmil/cli.py); from Python, ``bmil.load_policy`` loads a policy ``bmil export`` wrote.

Importing bmil changes nothing in the host process: the numeric pins (bmil.numerics) are the
``bmil`` command's and its workers'."""


def __getattr__(name: str):
    if name == "load_policy":  # imported on use: `import bmil` stays light
        from bmil.export import load_policy

        return load_policy
    raise AttributeError(f"module 'bmil' has no attribute '{name}'")
