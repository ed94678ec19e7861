"""LightningCLI for bmil: the parser behind ``bmil fit|validate|test|evaluate`` and the one way to
read the settings a run resolves to (``fit_settings``), used by ``bmil reproduce``."""

from __future__ import annotations

import json
import os
import re
import traceback
import warnings
from pathlib import Path

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from bmil import configs as shipped
from bmil.checkpoint import verify_checkpoint
from bmil.errors import BMILError, require
from bmil.files import folder_name
from bmil.methods import ImitationMethod
from bmil.trainer import BMILTrainer
from callbacks import EpochProgressBar, Robustness, TrainingSuccess, TrialReport, Validation

TRAINER_DEFAULTS = {
    "max_epochs": 200,
    "log_every_n_steps": 1,  # one training step is a whole outer epoch
    "default_root_dir": "runs",
    "logger": {"class_path": "bmil.logger.TensorBoardRun",
               "init_args": {"save_dir": "runs", "name": None}},
    "callbacks": [EpochProgressBar()],  # one line per run: epochs, loss, latest evaluation
    "plugins": [{"class_path": "bmil.checkpoint.AtomicCheckpointIO"}],
}


class _SaveConfig(SaveConfigCallback):
    """Saves the run's ``config.yaml``; a resumed run whose settings differ (a longer max_epochs)
    keeps the one before as ``config.<k>.yaml``, so that nothing the user ran is lost. How it was
    started (``resume_to``, ``tuned_elsewhere``, ``model_cache``) is left out: the file is the run's
    settings, which ``bmil evaluate``, ``validate`` and ``test`` take as their ``--config`` too."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        how_started = [key for key in ("resume_to", "tuned_elsewhere", "model_cache") if key in self.config]
        if how_started:
            self.config = self.config.clone()
            for key in how_started:
                self.config.pop(key)
        log_dir = trainer.log_dir  # every rank: this broadcasts
        if self.save_to_log_dir and trainer.is_global_zero and log_dir and not self.already_saved:
            path = Path(log_dir) / self.config_filename
            if path.is_file() and computed_settings(yaml.safe_load(path.read_text())) != computed_settings(
                    yaml.safe_load(self.parser.dump(self.config, skip_none=False))):
                k = 1
                while path.with_name(f"{path.stem}.{k}{path.suffix}").exists():
                    k += 1
                os.replace(path, path.with_name(f"{path.stem}.{k}{path.suffix}"))
        super().setup(trainer, pl_module, stage)


class BMILCLI(LightningCLI):
    """LightningCLI over ``bmil.methods`` (``model.class_path``) with ``BMILTrainer``; the checkpoint
    and evaluation callbacks are always there, configured by their own groups."""

    def __init__(self, args: list[str]):
        # bmil passes the arguments explicitly, so this warning never applies.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
        # During fit the val loader is deliberately empty (callbacks evaluate instead).
        warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")
        super().__init__(ImitationMethod, trainer_class=BMILTrainer, subclass_mode_model=True,
                         seed_everything_default=0, save_config_callback=_SaveConfig,
                         save_config_kwargs={"overwrite": True},
                         trainer_defaults=TRAINER_DEFAULTS, args=args)

    def init_parser(self, **kwargs):
        # A setting that does not parse raises (bmil.cli prints it as one line), not a usage dump.
        return super().init_parser(**{"exit_on_error": False, **kwargs})

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "evaluate": {"model"}, "check": {"model"}}

    def add_arguments_to_parser(self, parser) -> None:
        # One seed: Lightning's global seeding and the method's own generators.
        parser.link_arguments("seed_everything", "model.init_args.seed")
        # checkpoints/last.ckpt, rewritten atomically every epoch (resume with --ckpt_path).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.filename": "last", "checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(TrainingSuccess, "training_success")
        parser.add_lightning_class_args(Robustness, "robustness")
        parser.add_lightning_class_args(Validation, "validation")
        parser.add_lightning_class_args(TrialReport, "trial")  # after validation: it reads its checks
        # The validation is defined once and handed to the groups that read it.
        for group in ("robustness", "trial"):
            parser.link_arguments("validation", f"{group}.validation", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Verify a given checkpoint, refuse one of another method or domain, and refuse to resume
        a fit with method settings other than the checkpoint's (a resumed run continues exactly);
        trainer settings such as max_epochs may change. For validate, test and evaluate the
        checkpoint's settings build the network, as Lightning does."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path:
            return
        saved = verify_checkpoint(path).get("hyper_parameters", {})
        model = self.config[subcommand].model
        named = _method(model.class_path) != "ImitationMethod"  # the config names a method
        _refuse_other_task(path, saved, model, named)
        if named and subcommand in ("fit", "check"):
            _refuse_other_settings(path, saved, model.init_args.as_dict())
            return  # nothing to restore over the config: it equals the checkpoint's settings
        super()._parse_ckpt_path()

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if not isinstance(seed, bool):
            require(0 <= seed < 2**32, "seed_everything", seed, "a seed from 0 to 4294967295")
        super()._set_seed()

    def instantiate_classes(self) -> None:
        """Lightning's own classes (the Trainer, the checkpoint callback) refuse settings that parse
        but cannot work (``devices: abc``) with a traceback: here, one line."""
        try:
            super().instantiate_classes()
        except (MisconfigurationException, TypeError, ValueError) as e:
            if not _raised_by_lightning(e):
                raise
            raise BMILError(f"Lightning refuses these settings: {e} (the trainer.* and checkpoint.* settings: "
                            f"bmil {self.subcommand} --help-all).") from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        epochs = config.trainer.get("max_epochs")
        require(epochs is None or epochs >= -1, "trainer.max_epochs", epochs, "-1 (no limit), 0 or more")
        _default_strategy(config.trainer)
        _default_run_name(config)
        if self.subcommand in ("fit", "check"):
            _refuse_tuned_elsewhere(config)
        if self.subcommand in ("fit", "check") and config.get("ckpt_path"):
            _resume_folder(config)
            # A resumed run writes on into its own checkpoint folder, or (--resume_to new) into another.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            warnings.filterwarnings("ignore", message="The dirpath has changed from")


class _ParserOnly(BMILCLI):
    """Builds the parser and stops: nothing is parsed, seeded or instantiated."""

    def parse_arguments(self, parser, args) -> None:
        self.config = {"subcommand": None}

    def _parse_ckpt_path(self) -> None:
        pass

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


_PARSER = None


def parse_error(error: ArgumentError) -> str:
    """jsonargparse's message (a usage text, or a Union's every failed subtype) as one line: the
    setting's full key, the value given and what it must be, or that no such setting exists."""
    text = str(error)
    keys = re.findall(r'Parser key "([^"]+)"', text)
    unknown = re.search(r"unrecognized arguments: --?([\w.]+)|Option '([\w.]+)' is not accepted", text)
    if unknown:
        name = unknown.group(1) or unknown.group(2)
        return f"unknown setting {keys[0] + '.' + name if keys else name}"
    required = re.search(r"the following arguments are required: ([\w., ]+)", text)
    if not keys:
        if required and required.group(1).split(".")[-1].strip() == "model":
            return ("no method to run: give the run's config with --config (a run folder's config.yaml, or the "
                    "configs it was trained with)")
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    nested = re.search(r"NestedArg\(key='([^']+)', val=(.*)\)$", text, re.M)
    key = f"{keys[0]}.{nested.group(1) if nested else keys[-1]}" if len(keys) > 1 or nested else keys[0]
    # The innermost value given (the first in the text): the outer ones are whole blocks around it.
    given = nested.group(2) if nested else next(iter(re.findall(r"(?:Given|Got) value: (.*)", text)[:1]), "?")
    if given.startswith("Namespace("):  # settings given under a key that then is not a block of them
        needs = f", which then needs {', '.join(f'{key}.{n.strip()}' for n in required.group(1).split(','))}" if required else ""
        return (f"{key} was given settings under it (--{key}.<setting>){needs}; give them all as a block "
                f"(e.g. in the config), or {key} as one value without settings under it")
    expected = []
    for name, literal in re.findall(r"Expected a (?:<class '(\w+)'>|typing\.(Literal\[.*?\]))", text):
        name = {"NoneType": "null"}.get(name, name) or literal[len("Literal["):-1]
        if name not in expected:
            expected.append(name)
    return f"{key} = {given.strip()} is not valid" + (f" (it takes: {', '.join(expected)})" if expected else "")


TUNED_TASK = "# bmil tune task: "  # the line of a tuned_<method>.yaml that names the task it was tuned on


def tuned_task(settings: dict) -> dict:
    """The task of resolved fit settings, as a tune's overlay records it: the environment (less how it
    is named, drawn and checked) and the demonstrations (their path; none: the generated ones)."""
    model = settings["model"]["init_args"]
    env = _env_settings(_plain(model["env"]))
    if isinstance(env, dict):
        env = {k: v for k, v in env.items() if k not in ("name", "figure", "starts_check")}
    return {"env": env, "demos": (model.get("demos") or {}).get("path")}


def _refuse_tuned_elsewhere(config) -> None:
    """A tune's overlay applied over the config of another task is refused (unless asked for): its
    settings were chosen for the task it names."""
    if config.get("tuned_elsewhere"):
        return
    for path in config.get("config") or []:
        path = Path(getattr(path, "absolute", None) or str(path))
        line = next((line for line in _lines(path) if line.startswith(TUNED_TASK)), None)
        if line is None:
            continue
        recorded = json.loads(line[len(TUNED_TASK):])
        made = tuned_task({"model": {"init_args": {"env": recorded["env"], "demos": {"path": recorded["demos"]}}}})
        model = config.model.init_args
        asked = tuned_task({"model": {"init_args": {"env": _plain_config(model.env), "demos": _plain_config(model.demos)}}})
        differ = [key for key in made if made[key] != asked[key]]
        if differ:
            what = "; ".join(f"{key}: tuned on {_task_part(made, key)}, this run {_task_part(asked, key)}" for key in differ)
            differences = _env_differences(made["env"], asked["env"], ("the tune", "this run"))
            raise BMILError(f"{path.name} holds settings bmil tune chose for another task ({what}{differences}). Layer "
                            "it over the config it was tuned on, tune this task, or add --tuned_elsewhere true to "
                            "apply it anyway.")


def _task_part(task: dict, key: str) -> str:
    return _env_name(task[key]) if key == "env" else str(task[key] or "the generated demonstrations")


def _plain_config(value):
    return _plain(value.as_dict() if hasattr(value, "as_dict") else value or {})


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _raised_by_lightning(error: BaseException) -> bool:
    """Whether ``error`` was raised in Lightning's code (a setting it refuses), not a method's."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}lightning{os.sep}" in frames[-1].filename


def computed_settings(settings: dict) -> dict:
    """What a run computes, from its resolved settings (a deep copy): not how it was started (its
    config files, the checkpoint it resumed, where to resume), where it reports to (a tune's trial),
    where it logs, where it evaluates (an evaluation's executor), nor how it checks its starts."""
    settings = json.loads(json.dumps(settings or {}))
    for key in ("config", "ckpt_path", "resume_to", "tuned_elsewhere", "model_cache", "trial"):
        settings.pop(key, None)
    settings.get("trainer", {}).pop("logger", None)
    env = settings.get("model", {}).get("init_args", {}).get("env")
    if isinstance(env, dict):  # whether failed start checks refuse or warn: nothing computed
        env.pop("starts_check", None)
    for group in ("training_success", "robustness", "validation"):  # where it evaluates: the same outcomes
        settings.get(group, {}).pop("executor", None)
    return settings


def fit_settings(args: list[str]) -> dict:
    """The settings ``bmil fit <args>`` would run with, resolved by LightningCLI's own parser (its
    configs, overlays, overrides and defaults), as a plain dict; nothing is instantiated."""
    global _PARSER
    if _PARSER is None:
        _PARSER = _ParserOnly([]).parser
    try:
        cfg = _PARSER.parse_args(["fit", *shipped.as_files(args)])
    except ArgumentError as e:
        raise BMILError(f"these bmil fit arguments do not parse ({parse_error(e)}): {' '.join(args)}") from None
    return yaml.safe_load(_PARSER.dump(cfg, skip_link_targets=False, skip_none=False))["fit"]


def _default_run_name(config) -> None:
    """Runs go to runs/<env>_<method>/version_<k>/ unless the logger is given a name; <env> is the
    domain's name, or a configured environment's name or id, as one folder name (``folder_name``)."""
    logger = config.trainer.get("logger")
    init_args = getattr(logger, "init_args", None)
    if init_args is not None and init_args.get("name", "") is None:
        model = config.model
        env = model.init_args.env
        env = env if isinstance(env, str) else env.get("name") or env.get("id")
        init_args.name = folder_name(f"{env}_{_method(model.class_path).lower()}")


def _resume_folder(config) -> None:
    """``--ckpt_path <run>/checkpoints/last.ckpt`` continues that run in its own folder (its TensorBoard
    curves, best.ckpt and records), unless the command names another: ``--resume_to new``, or the
    logger's version or the checkpoint folder given explicitly."""
    logger = config.trainer.get("logger")
    init_args = getattr(logger, "init_args", None)
    explicit = init_args is None or init_args.get("version") is not None or config.checkpoint.get("dirpath")
    if config.get("resume_to", "same") == "new" or explicit:
        return
    ckpt = Path(config.ckpt_path)
    if ckpt.parent.name != "checkpoints":
        raise BMILError(f"--ckpt_path {ckpt} is not in a run folder (<run>/checkpoints/{ckpt.name}), so the run it "
                        "continues is unknown: add --resume_to new to continue it in a new run folder.")
    run = ckpt.parent.parent
    init_args.save_dir, init_args.name, init_args.version = str(run.parent.parent), run.parent.name, run.name


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


def _refuse_other_task(path, saved: dict, model, named: bool) -> None:
    """The checkpoint's domain must be the config's, and its method too where the config names one."""
    env = model.init_args.env
    made = (_method(saved.get("_class_path", "?")), _env_settings(saved.get("env", "?")))
    asked = (_method(model.class_path) if named else made[0], _env_settings(env.as_dict() if hasattr(env, "as_dict") else env))
    if made != asked:
        differ = _env_differences(made[1], asked[1])
        raise BMILError(f"'{path}' was made by {made[0]} on {_env_name(made[1])}, but the config asks for {asked[0]} "
                        f"on {_env_name(asked[1])}{differ}. Use the checkpoint with its own run's config.yaml (beside "
                        "it in the run folder), or a checkpoint of this method and domain.")


def _env_differences(made, asked, sources=("checkpoint", "config")) -> str:
    """Where two configured environments of one name differ: " (settings that differ: key: checkpoint
    x, config y; ...)" (``sources`` name the two), or "" where the names already tell them apart."""
    if not (isinstance(made, dict) and isinstance(asked, dict)) or _env_name(made) != _env_name(asked):
        return ""
    keys = [k for k in sorted(set(made) | set(asked)) if made.get(k) != asked.get(k)]
    return " (settings that differ: " + "; ".join(f"{k}: {sources[0]} {made.get(k)!r}, {sources[1]} {asked.get(k)!r}"
                                                  for k in keys) + ")" if keys else ""


def _env_settings(env):
    """A domain's name, or a configured environment's settings with every default filled in (a
    checkpoint made before a setting existed names the same environment)."""
    if isinstance(env, dict):
        from dataclasses import asdict

        from bmil.domains.from_gym import spec_of

        try:
            return _plain(asdict(spec_of(env)))
        except (BMILError, TypeError):
            pass
    return _plain(env)


def _env_name(env) -> str:
    """A domain's name, or a configured environment's (its name or id, "with other settings" when
    only they differ)."""
    return env if isinstance(env, str) else f"{env.get('name') or env.get('id')} (configured)"


def _refuse_other_settings(path, saved: dict, asked: dict) -> None:
    differing = [key for key in sorted(set(saved) | set(asked)) if not key.startswith("_")
                 and key != "evaluation" and _plain(saved.get(key)) != _plain(asked.get(key))]
    if differing:
        details = "; ".join(f"{k}: checkpoint {_plain(saved.get(k))}, now {_plain(asked.get(k))}" for k in differing)
        raise BMILError(f"Resuming '{path}' with other method settings than it was trained with ({details}). "
                        "A resumed run continues exactly, so these cannot change: drop the overrides (trainer "
                        "settings such as --trainer.max_epochs may change), or start a new run without --ckpt_path.")


def _plain(value):
    """Settings as JSON sees them (tuples and lists alike)."""
    return json.loads(json.dumps(value))


def _method(class_path: str) -> str:
    """The method's class name in a class path (bmil.methods.BMIL -> BMIL)."""
    return class_path.rsplit(".", 1)[-1]
