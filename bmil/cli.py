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

import signal
import sys
from pathlib import Path
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
    """The program (``argv`` None: the command line, with Ctrl-C and SIGTERM handled) or a call."""
    if argv is None:
        _stop_cleanly_on_signals()
    try:
        _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        _exit_interrupted()
    except SystemExit as e:
        if _STOPPED_BY:  # Lightning turns an interrupted fit into exit code 1: say what it was
            _exit_interrupted()
        raise e


_STOPPED_BY: list[int] = []


def _stop_cleanly_on_signals() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so that every command takes its clean path
    (Lightning's graceful shutdown, evaluation workers ended, a study's fits stopped)."""
    def stop(signum, frame):
        _STOPPED_BY.append(signum)
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _exit_interrupted() -> None:
    signum = _STOPPED_BY[0] if _STOPPED_BY else signal.SIGINT
    print(f"bmil: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    sys.exit(128 + signum)


def _main(argv: list[str]) -> None:
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

            for path in _config_files(argv):
                _check_config_file(Path(path))
            BMILCLI(argv)
        else:
            raise BMILError(f"unknown command '{argv[0]}'. Commands: {', '.join(commands)}.")
    except Exception as e:
        cause = _user_error(e)
        if cause is None:
            raise
        print(f"bmil: error: {cause}", file=sys.stderr)
        sys.exit(2)


def _config_files(argv: list[str]) -> list[str]:
    """The files given with --config / -c (either form)."""
    files = [value for flag, value in zip(argv, argv[1:]) if flag in ("--config", "-c")]
    return files + [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]


def _check_config_file(path: Path) -> None:
    """A missing, unreadable, empty or malformed config file (or one it includes) is one line naming
    the file, not jsonargparse's usage text with '<unicode string>' or 'Unexpected config'."""
    import yaml

    if not path.is_file():
        raise BMILError(f"config file '{path}' not found.")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BMILError(f"config file '{path}' is not valid YAML{where}: {getattr(e, 'problem', e)}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BMILError(f"config file '{path}' cannot be read ({e}).") from None
    if not isinstance(content, dict) or not content:
        raise BMILError(f"config file '{path}' holds no settings (a config is a mapping such as "
                        "'trainer: {max_epochs: 10}'; see conf/pickplace.yaml).")
    if isinstance(content.get("config"), str):  # an include, relative to this file's folder
        _check_config_file(path.parent / content["config"])


def _user_error(error: BaseException) -> BMILError | None:
    """The BMILError behind ``error``: jsonargparse wraps what a method's ``__init__`` raises."""
    while error is not None and not isinstance(error, BMILError):
        error = error.__cause__ or error.__context__
    return error


if __name__ == "__main__":
    main()
