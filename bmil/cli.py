"""The ``bmil`` command.

- ``bmil fit|validate|test|evaluate --config conf/<run>.yaml``: LightningCLI over ``BMILModule``;
  every hyper-parameter is a typed ``__init__`` argument, so ``bmil fit --help`` documents them all.
  ``evaluate`` measures training success and robustness of a checkpoint (``--ckpt_path``), the
  scripted expert or a random policy.
- ``bmil demos``: a plain typed function (it needs no model or trainer).
- ``bmil reproduce <study>``: the paper's comparisons as parallel ``bmil fit`` runs, tabulated
  (``bmil.reproduce``).

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


def _lightning_cli(argv: list[str]) -> None:
    import warnings

    from lightning.pytorch.cli import LightningCLI

    # main() always passes the arguments explicitly, so this warning never applies here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    # During fit the val loader is deliberately empty (callbacks evaluate instead).
    warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")

    from bmil.module import BMILModule
    from bmil.trainer import BMILTrainer

    class BMILCLI(LightningCLI):
        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            return {**LightningCLI.subcommands(), "evaluate": {"model"}}

        def add_arguments_to_parser(self, parser) -> None:
            # One seed: Lightning's global seeding and the module's own generators.
            parser.link_arguments("seed_everything", "model.seed")

        def before_instantiate_classes(self) -> None:
            _default_strategy(self.config[self.subcommand].trainer)

    BMILCLI(
        BMILModule,
        trainer_class=BMILTrainer,
        subclass_mode_model=False,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 200,
            "log_every_n_steps": 1,  # one training step is a whole outer epoch
            "default_root_dir": "runs",
            "plugins": [{"class_path": "bmil.checkpoint.AtomicCheckpointIO"}],
        },
        args=argv,
    )


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

            from bmil.reproduce import reproduce

            auto_cli({"reproduce": reproduce}, args=argv)
        elif argv[0] in LIGHTNING_COMMANDS:
            _lightning_cli(argv)
        else:
            raise BMILError(f"unknown command '{argv[0]}'. Commands: {', '.join(commands)}.")
    except BMILError as e:
        print(f"bmil: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bmil: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
