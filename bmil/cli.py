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

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentError

from bmil import configs as shipped, numerics
from bmil.errors import BMILError, find_cause


def demos(
    env: str,
    num: int = 10,
    seed: int = 0,
    out: Optional[str] = None,
    stop_on_success: bool = False,
    max_attempts: Optional[int] = None,
    minari: Optional[str] = None,
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
        minari: Also write them as the Minari dataset with this id (e.g. bmil/pickplace-expert-v0,
            under MINARI_DATASETS_PATH; read back with model.demos.path minari:<id>).
    """
    from bmil.demos import generate_demos, load_demos
    from bmil.files import check_folder

    if out:
        check_folder(out, "--out")
    meta = generate_demos(env, num, seed, out, stop_on_success, max_attempts)
    print(
        f"wrote {meta['episodes']} {env} demos ({meta['transitions']} transitions) to "
        f"{meta['path']} in {meta['seconds']:.1f} s; expert success "
        f"{meta['episodes']}/{meta['attempts']} = {100 * meta['expert_success_rate']:.1f}%"
    )
    if minari:
        from bmil.demo_formats import write_minari
        from bmil.domains import get_domain

        folder = write_minari(load_demos(meta["path"], env)[0], minari, get_domain(env))
        print(f"and as Minari dataset {minari} ({folder})")


def export(ckpt_path: str, out: str = "policy.pt") -> None:
    """Export a checkpoint's policy as TorchScript, with a JSON record of its layout beside it.

    The policy file holds everything from an observation to the env's action (the network, VINS's
    selection, the action rescaling); bmil.load_policy(out) loads it with torch only.

    Args:
        ckpt_path: A checkpoint bmil fit wrote (checkpoints/last.ckpt or best.ckpt).
        out: The policy file (its record: the same name with .json).
    """
    from bmil.export import export_policy, record_path
    from bmil.files import check_writable

    check_writable(out, "--out")
    record = export_policy(ckpt_path, out)
    layout = ", ".join(f"{name} ({size})" for name, size in record["observation"]["layout"])
    print(f"exported {record['method'].rsplit('.', 1)[-1]} on {record['domain']} (after epoch {record['epochs']}) to {out}; "
          f"record {record_path(Path(out))}\nobservation ({record['observation']['dim']}): {layout}\n"
          f"action ({record['action']['dim']}): within {record['action']['low']} .. {record['action']['high']}")


LIGHTNING_COMMANDS = ("fit", "check", "validate", "test", "evaluate")
COMMANDS = {
    "fit": "train a method (BMIL, BC, NoiseBC, CCIL, VINS) on a task from a config: bmil fit --config conf/pickplace.yaml",
    "check": "run every check of a fit without training; print the run it would make and its core-minutes",
    "evaluate": "robustness and training success of a checkpoint, the expert or a random policy (--json_out)",
    "validate": "training success of a checkpoint (--ckpt_path) with the model.evaluation settings",
    "test": "robustness of a checkpoint (--ckpt_path) with the model.evaluation settings",
    "export": "write a checkpoint's policy as TorchScript for use without bmil (bmil.load_policy)",
    "configs": "list the shipped configs, each usable by name: bmil fit --config pickplace",
    "demos": "generate a built-in domain's expert demonstrations (bmil's folder format)",
    "reproduce": "run one of the paper's studies (table1, ...) as parallel fits and tabulate it",
    "tune": "search each method's settings on validation starts (Optuna); test the chosen beside the defaults",
}
# The Trainer flags a bmil user reaches for; `bmil fit --help-all` lists all of Lightning's.
TRAINER_FLAGS = ("max_epochs", "accelerator", "devices", "num_nodes", "default_root_dir", "logger")


def main(argv: list[str] | None = None) -> None:
    """The program (``argv`` None: the command line, with the numeric pins and Ctrl-C and SIGTERM
    handled) or a call (the caller's process as it is)."""
    from bmil.runs import record as run_record

    if argv is None:
        numerics.pin()  # before anything loads torch (this module does not)
        _stop_cleanly_on_signals()
    # A call hands the caller's Ctrl-C back: Lightning ignores SIGINT for good once a fit is interrupted.
    held = _signal_handlers() if argv is not None else {}
    argv = sys.argv[1:] if argv is None else argv
    run_record.COMMAND_STARTED = time.perf_counter()  # before the heavy imports: a run's clock counts them
    try:
        _main(argv)
    except KeyboardInterrupt:
        _exit_interrupted()
    except BrokenPipeError:  # the reader of the output left (bmil configs | head): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor one when Python flushes at exit
        sys.exit(1)
    except SystemExit as e:
        if _STOPPED_BY:  # Lightning turns an interrupted fit into exit code 1: say what it was
            _exit_interrupted()
        raise e
    finally:
        run_record.COMMAND_STARTED = None
        for signum, handler in held.items():
            signal.signal(signum, handler)


_STOPPED_BY: list[int] = []


def _signal_handlers() -> dict:
    """SIGINT's and SIGTERM's handlers, where they can be put back (the main thread; set from Python)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None}


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
    commands = tuple(COMMANDS)
    argv = shipped.as_files(argv) if argv and argv[0] in ("tune", *LIGHTNING_COMMANDS) else argv
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(_overview())
            return
        if argv[0] in ("-V", "--version"):
            print(f"bmil {_version()}")
            return
        if argv[0] == "configs":
            print(_list_configs())
            return
        if argv[0] in ("demos", "export"):
            from jsonargparse import auto_cli

            auto_cli({"demos": demos, "export": export}, args=argv, as_positional=False)
        elif argv[0] == "reproduce":
            from jsonargparse import auto_cli

            from bmil.studies import reproduce

            auto_cli({"reproduce": reproduce}, args=_flag_alone(argv, "--plan"))
        elif argv[0] == "tune":
            from jsonargparse import auto_cli

            from bmil.tuning import tune

            auto_cli({"tune": tune}, args=_configs_as_one(argv), as_positional=False,
                     config_help="The task's config file, as for bmil fit; repeat it for layers (read as --configs).")
        elif argv[0] in LIGHTNING_COMMANDS:
            from bmil.lightning_cli import BMILCLI

            argv = _env_help(argv)
            if {"-h", "--help", "--help-all"} & set(argv[1:2]):
                print(_lightning_help(argv[0], full="--help-all" in argv[1:2]))
                return
            configs = _config_files(argv)
            for path in configs:
                _check_config_file(Path(path))
            if argv[0] in ("fit", "check") and not configs and not any(a.split("=")[0] in ("--model", "--ckpt_path", "--model.help") for a in argv):
                raise BMILError(f"bmil {argv[0]} needs a config: --config FILE, or a shipped config's name: "
                                f"{', '.join(_shipped_configs())} (make fit runs pickplace_quick; another method: a "
                                "second --config, e.g. bc; all of them: bmil configs; your own task: "
                                "docs/your-own-task.md).")
            BMILCLI(argv)
        else:
            raise BMILError(f"unknown command '{argv[0]}'. Commands: {', '.join(commands)}.")
    except ArgumentError as e:  # a setting that does not parse (the fit's settings)
        from bmil.lightning_cli import parse_error

        print(f"bmil: error: {parse_error(e)} (the settings: bmil {argv[0]} --help).", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        cause = _user_error(e)
        if cause is None:
            raise
        print(f"bmil: error: {cause}", file=sys.stderr)
        sys.exit(2)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bmil")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _overview() -> str:
    width = len("-V, --version")
    lines = [f"usage: bmil <command> [options]      (bmil <command> --help: its options)",
             "",
             f"Backwards Model-based Imitation Learning (Park & Wong, NeurIPS 2022), bmil {_version()}.",
             "",
             "commands:",
             *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
             "",
             "options:",
             f"  {'-h, --help':<{width}}  this overview",
             f"  {'-V, --version':<{width}}  bmil's version",
             "",
             f"runs shipped: {', '.join(_shipped_configs())} (--config NAME; all configs: bmil configs)",
             "guide: README.md; your own task: docs/your-own-task.md"]
    return "\n".join(lines)


def _shipped_configs() -> list[str]:
    """The runs shipped: one config per domain (``pickplace``); the other shipped configs are layers
    over a run (a method, a family's settings, an evaluation overlay) or examples."""
    from bmil.domains import domain_names

    return [name for name in domain_names() if shipped.shipped_path(name)]


def _list_configs() -> str:
    """``bmil configs``: every shipped config's name and what it is."""
    names = shipped.names()
    if not names:
        raise BMILError(f"no shipped configs under {shipped.SHIPPED}: the installation lacks them (reinstall bmil).")
    width = max(map(len, names))
    return "\n".join([f"Shipped configs (bmil fit --config NAME; their files: {shipped.SHIPPED}):",
                      *(f"  {name:<{width}}  {shipped.summary(name)}" for name in names)])


def _lightning_help(command: str, full: bool) -> str:
    """jsonargparse's help for ``command`` with bmil's own options first: the config, the method
    and the evaluation groups, then the Trainer flags people use; ``--help-all``: everything."""
    import contextlib
    import io
    import re
    import textwrap

    from bmil.lightning_cli import BMILCLI
    from bmil.methods import registered

    def captured(args: list[str]) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            BMILCLI(args)
        return out.getvalue()

    text = captured([command, "--help"])
    if full:
        return text
    blocks = [b for b in text.split("\n\n") if b.strip()]
    description, options = blocks[1], blocks[2]  # blocks[0], the usage, is rewritten below
    ours = [b for b in blocks if any(f"  --{g}." in b for g in ("training_success", "robustness", "validation"))]
    method = captured([command, "--model.help", "BMIL"]).split("\n\n")
    method_options = "\n\n".join(b for b in method if "  --model." in b and not b.startswith("usage:"))
    method_options = re.sub(rf"( *{re.escape(ENV_HELP)} +)Show the help for GymEnvSpec and exit\.",
                            lambda m: textwrap.fill(ENV_HELP_TEXT, 80, initial_indent=m.group(1),
                                                    subsequent_indent=" " * len(m.group(1))), method_options)
    trainer = next((b for b in blocks if "  --trainer." in b), "")
    picked = [e for e in _entries(trainer) if any(e.lstrip().startswith(f"--trainer.{f} ") or
                                                   e.lstrip().startswith(f"--trainer.{f}\n") for f in TRAINER_FLAGS)]
    tail = [b for b in blocks if "  --ckpt_path" in b]
    others = [m.label for m in registered().values() if m.label != "BMIL"]
    return "\n\n".join([
        f"usage: bmil {command} --config FILE|NAME [--<group>.<option> VALUE ...]   (NAME: a shipped config, bmil configs)",
        description, options,
        f"The method (--model bmil.methods.BMIL, {', '.join(others[:-1])} or {others[-1]}; the config sets it). "
        f"BMIL's settings (the others: bmil {command} --model.help {'|'.join(others)}):\n" + method_options,
        *ours,
        "The Trainer flags used most (Lightning's; all of them: bmil " + command + " --help-all):\n" + "\n".join(picked),
        *tail,
    ])


ENV_HELP = "--model.env.help"
ENV_HELP_TEXT = "Show the settings of a gymnasium environment (GymEnvSpec, with its StartSettings) and exit."


def _env_help(argv: list[str]) -> list[str]:
    """``--model.env.help [GymEnvSpec]``, with a config or without, as jsonargparse takes it: nested
    after ``--model.help <method>`` (every method has the same ``env``), without a value, the rest
    left out (the help is the same whatever they set)."""
    at = next((i for i, arg in enumerate(argv) if arg.split("=", 1)[0] == ENV_HELP), None)
    if at is None:
        return argv
    value = argv[at].split("=", 1)[1] if "=" in argv[at] else (
        argv[at + 1] if at + 1 < len(argv) and not argv[at + 1].startswith("-") else None)
    if value is not None and value.rsplit(".", 1)[-1] not in ("GymEnvSpec", "StartSettings"):
        raise BMILError(f"{ENV_HELP} shows the settings of a gymnasium environment (GymEnvSpec); '{value}' is "
                        f"not one: give it alone, bmil {argv[0]} {ENV_HELP}.")
    method = next((name for flag, name in zip(argv[:at], argv[1:at]) if flag == "--model.help"), "BMIL")
    return [argv[0], "--model.help", method, ENV_HELP]


def _entries(block: str) -> list[str]:
    """The options of a help block: each an option line and its indented description."""
    entries: list[str] = []
    for line in block.splitlines()[1:]:
        if line.startswith("  -"):
            entries.append(line)
        elif entries:
            entries[-1] += "\n" + line
    return entries


def _flag_alone(argv: list[str], flag: str) -> list[str]:
    """``--plan`` given alone as ``--plan true`` (jsonargparse wants a value for a bool)."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == flag and (i + 1 == len(argv) or argv[i + 1].lower() not in ("true", "false")):
            out.append("true")
    return out


def _configs_as_one(argv: list[str]) -> list[str]:
    """``--config a --config b`` as ``--configs a,b``: jsonargparse's own --config would read the
    file as the command's settings, where bmil tune wants the task's fit configs."""
    configs = _config_files(argv)
    for path in configs:
        _check_config_file(Path(path))
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config", "-c"):
            skip = True
        elif not arg.startswith("--config="):
            rest.append(arg)
    return [*rest, "--configs", ",".join(configs)] if configs else rest


def _config_files(argv: list[str]) -> list[str]:
    """The files given with --config / -c (either form), in their order on the command line."""
    return [arg.split("=", 1)[1] if arg.startswith("--config=") else arg
            for before, arg in zip(["", *argv], argv) if before in ("--config", "-c") or arg.startswith("--config=")]


def _check_config_file(path: Path) -> None:
    """A missing, unreadable, empty or malformed config file (or one it includes) is one line naming
    the file, not jsonargparse's usage text with '<unicode string>' or 'Unexpected config'."""
    import yaml

    if not path.is_file():
        raise BMILError(f"config file '{path}' not found, and no shipped config has that name (bmil configs "
                        "lists them).")
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
                        "'trainer: {max_epochs: 10}'; see the shipped ones: bmil configs).")
    if isinstance(content.get("config"), str):  # an include, relative to this file's folder
        _check_config_file(path.parent / content["config"])


def _user_error(error: BaseException) -> BMILError | None:
    """The BMILError behind ``error``: jsonargparse wraps what a method's ``__init__`` raises."""
    return find_cause(error, BMILError)

if __name__ == "__main__":
    main()
