"""End-to-end ``bmil fit`` on a tiny budget: training, resume equality, bad input, DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bmil.cli import main


def _config(tmp_path, push_demos, callbacks=(), method="BMIL", groups=None, **init) -> Path:
    """A tiny Push run: ``init`` updates the method's init_args (one level deep), ``groups`` the
    evaluation callbacks' groups (off by default)."""
    model = {"env": "push", "demos": {"path": str(push_demos), "num": 2},
             "policy": {"batch_size": 16, "steps_per_epoch": 10}}
    if method == "BMIL":
        model.update(demo_ratio=0.5, traces={"length": [1, 2], "length_epochs": [0, 2]},
                     model={"training": "steps", "steps": 5})
    for key, value in init.items():
        model[key] = {**model[key], **value} if isinstance(value, dict) and isinstance(model.get(key), dict) else value
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 3,
            "default_root_dir": str(tmp_path / "runs"),
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(tmp_path / "runs"), "name": "t", "version": 0}},
            "enable_model_summary": False,
            "callbacks": list(callbacks),
        },
        "checkpoint": {"dirpath": str(tmp_path / "ckpt")},
        "training_success": {"every_n_epochs": 0},
        "robustness": {"every_n_epochs": 0, "final_episodes": 0},
        **(groups or {}),
        "model": {"class_path": method if "." in method else f"bmil.methods.{method}", "init_args": model},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _policy(ckpt: Path) -> dict:
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("policy.")}


@pytest.mark.slow
def test_fit_trains_logs_and_evaluates(tmp_path, push_demos, capsys):
    groups = {"training_success": {"every_n_epochs": 1, "episodes": 1, "workers": 0},
              "robustness": {"every_n_epochs": 2, "episodes": 8, "final_episodes": 12, "workers": 0}}
    config = _config(tmp_path, push_demos, groups=groups, model={"training": "converge", "max_passes": 5})
    main(["fit", "--config", str(config)])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["bmil"]["policy_step"] == 30  # the last (0-based) epoch
    assert 0 < ckpt["bmil"]["model_step"]
    run = tmp_path / "runs" / "t" / "version_0"
    final = json.loads((run / "robustness_final.json").read_text())
    assert final["episodes"] == 12 and len(final["success"]) == 12
    assert (run / "robustness" / "epoch0002.png").is_file() and (run / "robustness" / "final.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    # Every evaluation on the epoch axis, the final test at the end of it; hp_metric is its rate.
    assert [e.step for e in events.Scalars("eval/robustness")] == [2]
    assert [(e.step, e.value) for e in events.Scalars("eval/final_robustness")] == [(3, pytest.approx(final["success_rate"]))]
    assert events.Scalars("hp_metric")[-1].value == pytest.approx(final["success_rate"])
    out = capsys.readouterr().out
    assert "final robustness" in out and out.count(f"run folder: {run}") == 2


@pytest.mark.slow
def test_bc_takes_the_same_policy_steps_without_a_model(tmp_path, push_demos):
    main(["fit", "--config", str(_config(tmp_path, push_demos, method="BC"))])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["bmil"] == {"policy_step": 30}
    assert not any(k.startswith("model.") for k in ckpt["state_dict"])


@pytest.mark.slow
def test_resume_after_a_crash_ends_with_identical_parameters(tmp_path, push_demos):
    full = tmp_path / "full"
    main(["fit", "--config", str(_config(full, push_demos, traces={"source": "backward"}))])
    crashed = tmp_path / "crashed"
    crash = [{"class_path": "probes.StopMidEpoch", "init_args": {"epoch": 2, "step": 9}}]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", "--config", str(_config(crashed, push_demos, crash))])
    last = crashed / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1  # saved after epoch 1; the crash hit epoch 2
    main(["fit", "--config", str(_config(crashed, push_demos)), "--ckpt_path", str(last)])
    a, b = _policy(full / "ckpt" / "last.ckpt"), _policy(last)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca, cb = (torch.load(p / "ckpt" / "last.ckpt", weights_only=False) for p in (full, crashed))
    assert ca["bmil"]["policy_step"] == cb["bmil"]["policy_step"] == 30


@pytest.mark.slow
def test_traces_are_rolled_only_where_the_epoch_draws_them(tmp_path, push_demos):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def rolled(folder, steps):  # trace rows rolled out in each of the 3 epochs (L = 1, 1, 2)
        main(["fit", "--config", str(_config(folder, push_demos, policy={"steps_per_epoch": steps}))])
        events = EventAccumulator(str(folder / "runs" / "t" / "version_0")).Reload()
        return [int(e.value) for e in events.Scalars("train/traces")]

    every = rolled(tmp_path / "every", 100)  # 800 draws an epoch: more than the rows, all rolled
    states = every[0]
    assert every == [states, states, 2 * states]
    drawn = rolled(tmp_path / "drawn", 10)  # 80 draws an epoch (8 trace rows a batch), fewer than the rows
    assert max(drawn[:2]) <= 80  # at L = 1 every row rolled is drawn
    assert 80 < drawn[2] < 2 * states  # at L = 2 a drawn second step needs its first rolled too


@pytest.mark.slow
def test_validate_test_and_evaluate_a_checkpoint(tmp_path, push_demos, capsys):
    config = str(_config(tmp_path, push_demos, method="BC"))
    main(["fit", "--config", config, "--trainer.max_epochs", "1"])
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    saved = tmp_path / "fit_config.yaml"  # what fit saved beside its logs (validate/test rewrite it)
    saved.write_text((tmp_path / "runs" / "t" / "version_0" / "config.yaml").read_text())
    main(["test", "--config", config, "--ckpt_path", ckpt, "--model.evaluation.test_episodes", "6"])
    main(["validate", "--config", config, "--ckpt_path", ckpt, "--model.evaluation.val_episodes", "4"])
    out = capsys.readouterr().out
    assert "test/robustness" in out and "val/robustness" in out and "val/training_success" in out
    report = tmp_path / "eval.json"
    main(["evaluate", "--config", config, "--ckpt_path", ckpt, "--episodes", "5", "--workers", "0",
          "--json_out", str(report)])
    record = json.loads(report.read_text())
    assert record["robustness"]["episodes"] == 5 and record["policy"] == "trained"
    # The config a fit run saves beside its logs works for evaluate as it is.
    main(["evaluate", "--config", str(saved), "--ckpt_path", ckpt, "--episodes", "3", "--workers", "0",
          "--json_out", str(report)])
    assert json.loads(report.read_text())["robustness"]["episodes"] == 3


@pytest.mark.slow
def test_forward_model_ablation_runs(tmp_path, push_demos):
    main(["fit", "--config", str(_config(tmp_path, push_demos, traces={"source": "forward"}))])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert any(k.startswith("model.state_net") for k in ckpt["state_dict"])


def test_vins_trains_value_and_dynamics_beside_bc_and_acts_by_selection(tmp_path, push_demos, capsys):
    vins = {"gamma": 0.98, "value_steps": 4, "value_batch_size": 16, "perturb_dims": [0, 1, 2],
            "perturb_scale": 0.7, "ns_penalty": 0.3, "model_steps": 3, "model_batch_size": 16,
            "candidates": 8, "action_noise": 0.1}
    groups = {"robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0, "figures": False}}
    main(["fit", "--config", str(_config(tmp_path, push_demos, method="VINS", groups=groups, vins=vins))])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert any(k.startswith("value.") for k in ckpt["state_dict"]) and any(k.startswith("dynamics.") for k in ckpt["state_dict"])
    assert ckpt["bmil"]["policy_step"] == 30 and len(ckpt["optimizer_states"]) == 3
    assert "over 4 episodes" in capsys.readouterr().out


@pytest.mark.slow
def test_model_first_keeps_the_model_with_the_best_held_out_nll(tmp_path, push_demos):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bmil.demos import load_demos
    from bmil.models import BackwardsModel

    config = _config(tmp_path, push_demos, model={"schedule": "first", "first_patience": 2,
                                                  "training": "converge", "max_passes": 3})
    main(["fit", "--config", str(config), "--trainer.max_epochs", "12"])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    events = EventAccumulator(str(tmp_path / "runs" / "t" / "version_0")).Reload()
    # All model training happens in epoch 0, then only the policy trains.
    [(step, model_steps)] = [(e.step, e.value) for e in events.Scalars("train/model_steps_per_epoch")]
    assert step == 0 and ckpt["bmil"]["model_step"] == model_steps and ckpt["bmil"]["policy_step"] == 120
    # It stopped for patience, before 12 rounds (of 3 passes of 5 minibatches each) ...
    assert model_steps < 12 * 3 * 5
    # ... and the frozen model is the best round's, not the last's: the held-out NLL of the
    # checkpointed model is the best one logged (the last rounds were worse by construction).
    td, _ = load_demos(push_demos, env="push")
    model = BackwardsModel(td["obs"].shape[-1], td["action"].shape[-1])
    model.load_state_dict({k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    holdout = torch.randperm(len(td), generator=torch.Generator().manual_seed(0))[: int(0.2 * len(td))]
    with torch.no_grad():
        nll = model.loss(td["obs"][holdout], td["action"][holdout], td["next_obs"][holdout]).item()
    [logged] = [e.value for e in events.Scalars("train/holdout_nll")]
    assert nll == pytest.approx(logged, rel=1e-5)


def test_model_first_with_a_non_finite_held_out_nll_is_one_clear_error(tmp_path, push_demos, capsys,
                                                                       monkeypatch):
    from bmil.methods import BMIL

    monkeypatch.setattr(BMIL, "_holdout_loss", lambda self: torch.tensor(float("nan")))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(_config(tmp_path, push_demos, model={"schedule": "first"}))])
    _assert_one_error_line(capsys.readouterr().err, "The held-out dynamics-model loss became nan")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"demo_ratio": 1.5}, "demo_ratio (p_d) must be in (0, 1)"),
        ({"demo_ratio": 0.0}, "demo_ratio (p_d) must be in (0, 1)"),
        ({"demo_ratio": 1.0}, "For behaviour cloning (p_d = 1) use the method bmil.methods.BC"),
        ({"env": "pushh"}, "Unknown environment 'pushh'"),
        ({"env": "pickplace"}, "holds demonstrations for env 'push', but env 'pickplace'"),
        ({"demos": {"num": 7}}, "holds 2 demos but demos.num is 7"),
        ({"traces": {"bound_states": True}}, "traces.bound_states needs state bounds"),
        ({"policy": {"head": "beta"}}, "Unknown policy head 'beta'"),
    ],
)
def test_bad_model_settings_are_one_clear_error(tmp_path, push_demos, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(_config(tmp_path, push_demos, **extra)), "--trainer.max_epochs", "1"])
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, message)


def _assert_one_error_line(err: str, message: str) -> None:
    # (Lightning's log handler may also complain about streams pytest closed in earlier tests;
    # what matters is our one line and no traceback of the error itself.)
    lines = [line for line in err.splitlines() if line.startswith("bmil: error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert "BMILError" not in err


def test_unknown_config_key_is_named(tmp_path, push_demos, capsys):
    config = _config(tmp_path, push_demos, demo_ratoi=0.5)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    assert "bmil: error: unknown setting model.demo_ratoi (the settings: bmil fit --help)." in capsys.readouterr().err


@pytest.mark.slow
def test_missing_demos_are_generated_where_asked(tmp_path, push_demos):
    demos = tmp_path / "fresh_demos"
    main(["fit", "--config", str(_config(tmp_path, demos)), "--trainer.max_epochs", "1", "--model.demos.generate", "true"])
    assert (demos / "bmil_demos.json").is_file()


def test_nan_loss_is_one_clear_error(tmp_path, push_demos, capsys):
    config = _config(tmp_path, push_demos, method="BC", policy={"lr": 1e30})
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--trainer.max_epochs", "2"])
    err = capsys.readouterr().err
    _assert_one_error_line(err, "policy loss became")
    assert "Lower model.policy.lr" in err


@pytest.mark.slow
def test_two_process_cpu_ddp_synchronises_and_shards(tmp_path, push_demos):
    probe = [{"class_path": "probes.SavePolicyPerRank", "init_args": {"folder": str(tmp_path / "ranks")}}]
    groups = {"robustness": {"every_n_epochs": 0, "final_episodes": 10, "workers": 0},
              "validation": {"every_n_epochs": 1, "episodes": 6, "workers": 0}}
    config = _config(tmp_path, push_demos, probe, groups=groups, policy={"ema_decay": 0.9})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "bmil.cli", "fit", "--config", str(config),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.max_epochs", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt") for r in (0, 1))
    for key in r0:  # ranks saw different minibatches; equal weights mean synchronised gradients
        assert torch.equal(r0[key], r1[key]), key
    run = tmp_path / "runs" / "t" / "version_0"
    final = json.loads((run / "robustness_final.json").read_text())
    assert final["episodes"] == 10 and len(final["success"]) == 10
    # Validation is sharded and gathered like the test: both ranks chose the same best policy.
    assert [h["episodes"] for h in json.loads((run / "validation.json").read_text())["history"]] == [6, 6]
    assert json.loads((run / "robustness_best.json").read_text())["episodes"] == 10


def test_the_base_class_is_no_method_and_says_so(tmp_path, push_demos, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(_config(tmp_path, push_demos, method="ImitationMethod"))])
    _assert_one_error_line(capsys.readouterr().err, "No method to train: name one with --model BMIL")


@pytest.mark.slow
def test_a_method_defined_outside_bmil_trains_through_its_class_path(tmp_path, push_demos):
    noisy, plain = tmp_path / "noisy", tmp_path / "plain"
    main(["fit", "--config", str(_config(noisy, push_demos, method="probes.StateNoiseBC", noise=0.5))])
    main(["fit", "--config", str(_config(plain, push_demos, method="BC"))])
    a, b = _policy(noisy / "ckpt" / "last.ckpt"), _policy(plain / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)  # the noise took effect
    saved = yaml.safe_load((noisy / "runs" / "t" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "probes.StateNoiseBC" and saved["model"]["init_args"]["noise"] == 0.5


@pytest.mark.parametrize("args, message", [
    (["--model.policy.batch_size", "0"], "model.policy.batch_size = 0 is out of range: it must be at least 1"),
    (["--model.policy.steps_per_epoch", "0"], "model.policy.steps_per_epoch = 0 is out of range"),
    (["--model.policy.lr", "-1"], "model.policy.lr = -1.0 is out of range: it must be a positive number"),
    (["--model.demos.num", "0"], "model.demos.num = 0 is out of range"),
    (["--model.traces.length", "[0, 0]"], "model.traces.length = [0, 0] is out of range"),
    (["--model.traces.length_epochs", "[5, 2]"], "model.traces.length_epochs = [5, 2] is out of range"),
    (["--model.traces.selection_coef", "-5"], "model.traces.selection_coef = -5.0 is out of range: it must be positive for sc"),
    (["--model.demo_ratio", "0.01"], "model.demo_ratio = 0.01 is out of range: it must be at least 1 / model.policy.batch_size"),
    (["--model.model.holdout_ratio", "1.0"], "model.model.holdout_ratio = 1.0 is out of range: it must be in (0, 1)"),
    (["--model.model.patience", "0"], "model.model.patience = 0 is out of range"),
    (["--model.evaluation.test_episodes", "0"], "model.evaluation.test_episodes = 0 is out of range"),
    (["--trainer.max_epochs", "-5"], "trainer.max_epochs = -5 is out of range"),
    (["--robustness.episodes", "0"], "robustness.episodes = 0 is out of range"),
    (["--training_success.every_n_epochs", "-1"], "training_success.every_n_epochs = -1 is out of range"),
    (["--robustness.final_episodes", "-1"], "robustness.final_episodes = -1 is out of range"),
])
def test_numeric_settings_are_checked_where_they_enter(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "conf/pickplace.yaml", *args])
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, message)


@pytest.mark.parametrize("args, message", [
    (["--config", "conf/pickplace.yaml", "--config", "conf/vins_pickplace.yaml", "--model.vins.perturb_dims", "[0, 25]"],
     "model.vins.perturb_dims = [0, 25] is out of range: it must be observation dimensions of pickplace, 0 to 24"),
    (["--config", "conf/pickplace.yaml", "--config", "conf/vins_pickplace.yaml", "--model.vins.gamma", "0"],
     "model.vins.gamma = 0.0 is out of range: it must be in (0, 1]"),
])
def test_vins_settings_are_checked(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *args])
    _assert_one_error_line(capsys.readouterr().err, message)


@pytest.mark.parametrize("episodes", ["0", "-5"])
def test_evaluate_needs_episodes(episodes, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--config", "conf/pickplace.yaml", "--policy", "random", "--episodes", episodes])
    _assert_one_error_line(capsys.readouterr().err, f"--episodes = {episodes} is out of range: it must be at least 1")


@pytest.mark.slow
def test_checkpoints_are_verified_and_resume_refuses_other_settings(tmp_path, push_demos, capsys):
    import struct
    import zipfile

    config = str(_config(tmp_path, push_demos, method="BC"))
    main(["fit", "--config", config, "--trainer.max_epochs", "1"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    capsys.readouterr()

    def error(*args) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        [line] = [line for line in err.splitlines() if line.startswith("bmil: error:")]
        assert "Traceback" not in err
        return line

    data = bytearray(ckpt.read_bytes())
    at = zipfile.ZipFile(ckpt).getinfo("archive/data/0").header_offset  # its local header, then its data
    name_length, extra_length = struct.unpack("<HH", data[at + 26: at + 30])
    data[at + 30 + name_length + extra_length + 8] ^= 0x40  # one flipped bit in a weight
    flipped, truncated = tmp_path / "flipped.ckpt", tmp_path / "truncated.ckpt"
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(ckpt.read_bytes()[:50_000])
    assert "is damaged (CRC mismatch in archive/data/0)" in error("fit", "--config", config, "--ckpt_path", str(flipped))
    assert "is not a checkpoint" in error("evaluate", "--config", config, "--ckpt_path", str(truncated))
    assert "not found" in error("fit", "--config", config, "--ckpt_path", str(tmp_path / "nothing.ckpt"))
    assert "was made by BC on push, but the config asks for BC on pickplace" in error(
        "evaluate", "--config", config, "--ckpt_path", str(ckpt), "--model.env", "pickplace")
    assert "was made by BC on push, but the config asks for BMIL on push" in error(
        "fit", "--config", str(_config(tmp_path / "b", push_demos)), "--ckpt_path", str(ckpt))
    message = error("fit", "--config", config, "--ckpt_path", str(ckpt), "--model.policy.lr", "0.01")
    assert "with other method settings than it was trained with (policy: checkpoint" in message
    assert "'lr': 0.0003" in message and "'lr': 0.01" in message
    main(["fit", "--config", config, "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2"])  # trainer: may change
    assert torch.load(ckpt, weights_only=False)["bmil"]["policy_step"] == 20


def test_two_runs_never_share_a_version_folder(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from bmil.logger import TensorBoardRun

    # Two runs set up at the same instant, before either has written anything: Lightning's choice
    # (the next free number) gives both version_0; a claimed folder gives each its own.
    plain = [TensorBoardLogger(tmp_path / "plain", name="same") for _ in range(2)]
    assert [logger.version for logger in plain] == [0, 0]
    claimed = [TensorBoardRun(tmp_path / "claimed", name="same") for _ in range(3)]
    assert [logger.version for logger in claimed] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "claimed" / "same").iterdir()) == ["version_0", "version_1", "version_2"]


@pytest.mark.slow
def test_two_fits_started_together_write_two_run_folders(tmp_path, push_demos):
    config = _config(tmp_path, push_demos, method="BC")
    cfg = yaml.safe_load(config.read_text())
    cfg["trainer"]["logger"] = {"init_args": {"save_dir": str(tmp_path / "runs"), "name": "same"}}  # the default logger
    cfg.pop("checkpoint")  # checkpoints in each run's own folder
    config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "bmil.cli", "fit", "--config", str(config), "--trainer.max_epochs", "1"]
    fits = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for fit in fits:
        assert fit.wait(timeout=300) == 0, fit.stderr.read()[-2000:]
    runs = sorted((tmp_path / "runs" / "same").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1"]
    for run in runs:
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
        assert len(list(run.glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_a_fit_stopped_during_its_final_test_resumes_the_test_where_it_was(tmp_path, push_demos, monkeypatch):
    import bmil.evaluation.evaluator as evaluator

    groups = {"robustness": {"every_n_epochs": 0, "final_episodes": 64, "workers": 0}}  # 4 batches of 16
    main(["fit", "--config", str(_config(tmp_path / "whole", push_demos, method="BC", groups=groups))])
    whole = json.loads((tmp_path / "whole" / "runs" / "t" / "version_0" / "robustness_final.json").read_text())

    run_batches, ran = evaluator.run_batches, []

    def killed_after_two(*args, **kwargs):
        if len(ran) == 2:
            raise RuntimeError("simulated kill")  # the machine goes: the run stops during its final test
        ran.append(args[3])
        return run_batches(*args, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(evaluator, "run_batches", killed_after_two)
    with pytest.raises(RuntimeError, match="simulated kill"):
        main(["fit", "--config", str(_config(stopped, push_demos, method="BC", groups=groups))])
    run = stopped / "runs" / "t" / "version_0"
    assert not (run / "robustness_final.json").exists() and len((run / "robustness_final.journal").read_text().splitlines()) == 3

    ran.clear()
    monkeypatch.setattr(evaluator, "run_batches", lambda *a, **k: (ran.append(a[3]), run_batches(*a, **k))[1])
    main(["fit", "--config", str(_config(stopped, push_demos, method="BC", groups=groups)),
          "--ckpt_path", str(stopped / "ckpt" / "last.ckpt")])
    assert ran == [[2], [3]]  # the two batches the stopped test had not finished
    assert json.loads((run / "robustness_final.json").read_text()) == whole
    assert not (run / "robustness_final.journal").exists()
