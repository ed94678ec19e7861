"""The ``bmil`` command.

- ``bmil fit|validate|test|evaluate --config conf/<run>.yaml``: LightningCLI over the methods of
  ``bmil.methods`` (``model.class_path``); every hyper-parameter is a typed ``__init__`` argument or
  a field of a settings dataclass, so ``bmil fit --help`` and ``bmil fit --model BMIL --help``
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


def _lightning_cli(argv: list[str], parse_only: bool = False):
    """Run LightningCLI on ``argv``; with ``parse_only``, build its parser and return it."""
    import warnings

    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from bmil.methods import ImitationMethod
    from bmil.trainer import BMILTrainer
    from callbacks import EpochProgressBar, Robustness, TrainingSuccess

    # main() always passes the arguments explicitly, so this warning never applies here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    # During fit the val loader is deliberately empty (callbacks evaluate instead).
    warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")

    class BMILCLI(LightningCLI):
        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            return {**LightningCLI.subcommands(), "evaluate": {"model"}}

        def add_arguments_to_parser(self, parser) -> None:
            # One seed: Lightning's global seeding and the method's own generators.
            parser.link_arguments("seed_everything", "model.init_args.seed")
            # checkpoints/last.ckpt, rewritten atomically every epoch (resume with --ckpt_path).
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.filename": "last", "checkpoint.enable_version_counter": False})
            parser.add_lightning_class_args(TrainingSuccess, "training_success")
            parser.add_lightning_class_args(Robustness, "robustness")

        def parse_arguments(self, parser, args) -> None:
            if parse_only:  # stop once the parser is built
                self.config = {"subcommand": None}
                return
            super().parse_arguments(parser, args)

        def _parse_ckpt_path(self) -> None:
            if not parse_only:
                super()._parse_ckpt_path()

        def _set_seed(self) -> None:
            if not parse_only:
                super()._set_seed()

        def before_instantiate_classes(self) -> None:
            if parse_only:
                return
            config = self.config[self.subcommand]
            _default_strategy(config.trainer)
            _default_run_name(config)

        def instantiate_classes(self) -> None:
            if not parse_only:
                super().instantiate_classes()

    cli = BMILCLI(
        ImitationMethod,
        trainer_class=BMILTrainer,
        subclass_mode_model=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 200,
            "log_every_n_steps": 1,  # one training step is a whole outer epoch
            "default_root_dir": "runs",
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": "runs", "name": None}},
            "callbacks": [EpochProgressBar()],  # one line per run: epochs, loss, latest evaluation
            "plugins": [{"class_path": "bmil.checkpoint.AtomicCheckpointIO"}],
        },
        args=argv,
    )
    return cli.parser if parse_only else None


def fit_settings(args: list[str]) -> dict:
    """The settings ``bmil fit <args>`` would run with, resolved by LightningCLI's own parser (its
    configs, overlays, overrides and defaults), as a plain dict; nothing is instantiated."""
    import yaml

    parser = _fit_parser()
    try:
        cfg = parser.parse_args(["fit", *args])
    except SystemExit:  # jsonargparse has printed what is wrong
        raise BMILError(f"these bmil fit arguments do not parse (see above): {' '.join(args)}") from None
    return yaml.safe_load(parser.dump(cfg, skip_link_targets=False, skip_none=False))["fit"]


_PARSER = None


def _fit_parser():
    global _PARSER
    if _PARSER is None:
        _PARSER = _lightning_cli([], parse_only=True)
    return _PARSER


def _default_run_name(config) -> None:
    """Runs go to runs/<env>_<method>/version_<k>/ unless the logger is given a name."""
    logger = config.trainer.get("logger")
    init_args = getattr(logger, "init_args", None)
    if init_args is not None and init_args.get("name", "") is None:
        model = config.model
        init_args.name = f"{model.init_args.env}_{model.class_path.rsplit('.', 1)[-1].lower()}"


def _default_strategy(trainer_cfg) -> None:
    """With several devices or nodes, default to DDP that tolerates unused parameters.

    Each step trains either the policy or the dynamics model, so the other network's parameters
    get no gradient; plain DDP stops with an error about unused parameters.
    """
    devices = trainer_cfg.get("devices", "auto")
    count = len(devices) if isinstance(devices, (list, tuple)) else devices
    try:
        count = int(count)
    except (TypeError, ValueError):
        count = 1  # "auto" on CPU is one device; on GPU machines pass --trainer.devices N
    if trainer_cfg.get("strategy", "auto") == "auto" and (count > 1 or trainer_cfg.get("num_nodes", 1) > 1):
        trainer_cfg["strategy"] = "ddp_find_unused_parameters_true"


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
            _lightning_cli(argv)
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
