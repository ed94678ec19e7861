"""The ``bmil`` command.

- ``bmil fit|validate|test|evaluate --config conf/<run>.yaml``: LightningCLI over the methods of
  ``bmil.methods`` (``model.class_path``); every hyper-parameter is a typed ``__init__`` argument or
  a field of a settings dataclass, so ``bmil fit --help`` and ``bmil fit --model.help BMIL``
  document them all. The checkpoint, progress bar and evaluation callbacks are always there, set by
  their own groups (``--checkpoint.*``, ``--training_success.*``, ``--robustness.*``). ``evaluate``
  measures training success and robustness of a checkpoint (``--ckpt_path``), the scripted expert
  or a random policy.
- ``bmil demos``: a plain typed function (it needs no model or trainer).
- ``bmil reproduce <study>``: the paper's comparisons as parallel ``bmil fit`` runs, tabulated
  (``bmil.studies``).

Problems the user can fix end in one ``bmil: error:`` line, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Optional

from bmil.errors import BMILError


def demos(
    env: str,
    num: int = 10,
    seed: int = 0,
    out: Optional[str] = None,
    stop_on_success: bool = False,
    max_attempts: Optional[int] = None,
) -> None:
    """Generate expert demonstrations from the training start and save them atomically.

    Args:
        env: Environment short name (e.g. push, pickplace).
        num: Number of successful demonstrations to keep.
        seed: Seed of the expert's noise; the same seed gives the same demos.
        out: Output folder (default: demos/<env>_n<num>_s<seed>).
        stop_on_success: End each demo at its first success, as the original code did (default:
            run the full horizon so the demos also show holding the goal).
        max_attempts: Give up after this many episodes (default 5 * num + 10).
    """
    from bmil.demos import generate_demos

    meta = generate_demos(env, num, seed, out, stop_on_success, max_attempts)
    print(
        f"wrote {meta['episodes']} {env} demos ({meta['transitions']} transitions) to "
        f"{meta['path']} in {meta['seconds']:.1f} s; expert success "
        f"{meta['episodes']}/{meta['attempts']} = {100 * meta['expert_success_rate']:.1f}%"
    )


LIGHTNING_COMMANDS = ("fit", "validate", "test", "evaluate")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = ("demos", "reproduce") + LIGHTNING_COMMANDS
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: bmil {{{','.join(commands)}}} [--help]")
            return
        if argv[0] == "demos":
            from jsonargparse import auto_cli

            auto_cli({"demos": demos}, args=argv, as_positional=False)
        elif argv[0] == "reproduce":
            from jsonargparse import auto_cli

            from bmil.studies import reproduce

            auto_cli({"reproduce": reproduce}, args=argv)
        elif argv[0] in LIGHTNING_COMMANDS:
            from bmil.lightning_cli import BMILCLI

            BMILCLI(argv)
        else:
            raise BMILError(f"unknown command '{argv[0]}'. Commands: {', '.join(commands)}.")
    except Exception as e:
        cause = _user_error(e)
        if cause is None:
            raise
        print(f"bmil: error: {cause}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bmil: interrupted", file=sys.stderr)
        sys.exit(130)


def _user_error(error: BaseException) -> BMILError | None:
    """The BMILError behind ``error``: jsonargparse wraps what a method's ``__init__`` raises."""
    while error is not None and not isinstance(error, BMILError):
        error = error.__cause__ or error.__context__
    return error


if __name__ == "__main__":
    main()
