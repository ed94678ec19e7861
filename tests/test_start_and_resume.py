"""A run that starts right and resumes right (issue 54): every check before the run folder exists,
resume into the run's own folder, ``bmil check``, and the numeric pins in every bmil process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
import yaml

from bmil.cli import main
from bmil.domains import get_domain
from bmil.errors import BMILError

ROOT = Path(__file__).resolve().parents[1]


def _error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err  # (Lightning's log lines and progress bars before it, in this process)
    assert err.count("bmil: error: ") == 1 and err.endswith("\n"), err
    message = "bmil: error: " + err.split("bmil: error: ")[1]
    assert message.count("\n") == 1, message  # one line, the last
    return message


@pytest.mark.slow
def test_the_readme_resume_command_continues_the_run_in_its_own_folder(user_folder, capsys):
    fit = ["fit", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml"]
    main(fit)
    run = user_folder / "runs" / "pickplace_quick" / "version_0"
    assert (run / "checkpoints" / "best.ckpt").is_file()
    err = _error(capsys, *fit, "--ckpt_path", str(run / "checkpoints" / "best.ckpt"))
    assert "holds a policy's weights only" in err and "resume from the run's last.ckpt" in err
    # The README's command, as written (--trainer.max_epochs 52 there: 2 more epochs here too).
    main([*fit, "--ckpt_path", "runs/pickplace_quick/version_0/checkpoints/last.ckpt", "--trainer.max_epochs", "4"])
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # no version_1
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 3
    history = json.loads((run / "validation.json").read_text())["history"]
    assert [check["epoch"] for check in history] == [1, 2, 3, 4]  # the record goes on
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # TensorBoard reads both as one run
    starts = json.loads((run / "run.json").read_text())["starts"]
    assert [s["resumed_from"] for s in starts] == [None, "runs/pickplace_quick/version_0/checkpoints/last.ckpt"]
    assert yaml.safe_load((run / "config.1.yaml").read_text())["trainer"]["max_epochs"] == 2  # kept
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_epochs"] == 4
    assert "final robustness" in capsys.readouterr().out

    # Into a new folder only when asked: the run's best.ckpt goes with it.
    main([*fit, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "5",
          "--resume_to", "new"])
    new = run.parent / "version_1"
    assert torch.load(new / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 4
    assert (new / "checkpoints" / "best.ckpt").is_file()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 3  # untouched

    # A checkpoint carried out of its run folder: no run to continue, and its best policy left behind.
    saved = user_folder / "saved.ckpt"
    saved.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    err = _error(capsys, *fit, "--ckpt_path", str(saved), "--trainer.max_epochs", "5")
    assert "is not in a run folder" in err and "--resume_to new" in err
    err = _error(capsys, *fit, "--ckpt_path", str(saved), "--trainer.max_epochs", "5", "--resume_to", "new")
    assert "best.ckpt is missing" in err and "Copy best.ckpt together with saved.ckpt" in err
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]  # refused: no version_2


@pytest.mark.parametrize("args, message", [
    (["--validation.seed", "0"], "validation.seed = 0 is out of range"),
    (["--model.demos.path", "PUSH"], "holds demonstrations for env 'push', but env 'pickplace' was asked for"),
    (["--model.policy.lr_decay_epochs", "5", "--trainer.max_epochs", "-1"], "lr_decay_epochs needs a finite"),
    (["--model.model.schedule", "first", "--trainer.max_epochs", "-1"], "schedule first needs a finite"),
])
def test_a_refused_start_leaves_no_run_folder(user_folder, push_demos, capsys, args, message):
    args = [str(push_demos) if a == "PUSH" else a for a in args]
    err = _error(capsys, "fit", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", *args)
    assert message in err
    assert not (user_folder / "runs").exists()


def test_a_checkpoint_of_another_configured_env_names_the_settings_that_differ():
    from bmil.lightning_cli import _env_differences

    made, asked = {"id": "Hopper-v5", "horizon": 100, "obs_keys": []}, {"id": "Hopper-v5", "horizon": 50, "obs_keys": []}
    assert _env_differences(made, asked) == " (settings that differ: horizon: checkpoint 100, config 50)"
    assert _env_differences(made, {**asked, "id": "Walker2d-v5"}) == ""  # the names tell them apart
    assert _env_differences("push", "pickplace") == ""


def test_env_settings_from_gymnasium_are_checked_at_construction():
    umaze = {"id": "PointMaze_UMaze-v3", "kwargs": {"continuing_task": False, "max_episode_steps": 80},
             "obs_keys": ["observation", "desired_goal"], "success_key": "success"}
    domain = get_domain(umaze)
    assert domain.horizon == 80  # gymnasium's own keyword is the horizon
    env = domain.make_env()  # and does not collide with it (it did, at the first evaluation)
    assert env.spec.max_episode_steps == 80
    with pytest.raises(BMILError, match=r"max_episode_steps \(80\) and model.env.horizon \(300\)"):
        get_domain({**umaze, "horizon": 300})
    with pytest.raises(BMILError, match="success_key 'is_success' is not in PointMaze_UMaze-v3's step info"):
        get_domain({**umaze, "success_key": "is_success"})
    with pytest.raises(BMILError, match="No module named 'shimmy'. Install the package"):
        get_domain({"id": "shimmy:Foo-v0"})


def test_an_env_missing_package_is_one_line_on_the_tutorial_config(tmp_path):
    bmil = Path(sys.executable).with_name("bmil")
    done = subprocess.run([str(bmil), "fit", "--config", str(ROOT / "conf" / "examples" / "pointmaze_umaze.yaml"),
                           "--model.init_args.env.id", "shimmy:Foo-v0"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "bmil: error: model.env.id 'shimmy:Foo-v0': No module named 'shimmy'. Install the package that provides the "
        "environment into this Python environment, or correct the module's name before the ':'.")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_an_env_only_the_main_process_can_build_is_refused_at_the_start():
    from bmil.evaluation import check_worker

    gym.register("OnlyHere-v0", entry_point="gymnasium.envs.classic_control:Continuous_MountainCarEnv",
                 max_episode_steps=50)
    try:
        domain = get_domain({"id": "OnlyHere-v0", "success": "terminated"})  # built here: registered here
        with pytest.raises(BMILError, match="An evaluation worker cannot build OnlyHere-v0.*OnlyHere"):
            check_worker(domain)
        check_worker(get_domain({"id": "MountainCarContinuous-v0", "success": "terminated"}))  # registered anywhere
    finally:
        gym.registry.pop("OnlyHere-v0")


@pytest.mark.slow
def test_check_describes_the_run_and_writes_nothing(user_folder, capsys):
    main(["check", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml"])
    out = capsys.readouterr().out
    for line in ("bmil check: every check passed; the run was not started", "environment   pickplace: observation 25, action 4, horizon 50",
                 "demos         2 episodes", "method        BMIL, seed 0", "epochs        2 x 5 policy steps",
                 "validation 2 x 4", "run folder    runs/pickplace_quick/version_0 (new)", "numerics: ",
                 "core-minutes"):
        assert line in out, line
    assert not (user_folder / "runs").exists()
    assert "its estimate trained a few epochs" in out
    main(["check", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--timed_epochs", "0"])
    out = capsys.readouterr().out
    assert "(no estimate: no epoch was timed)" in out and "trained a few epochs" not in out and "core-minutes" not in out


def test_the_bmil_command_runs_the_pinned_numerics(tmp_path):
    """The program (cli.main with the command line) pins before anything loads torch; import bmil
    does not (tests/test_packaging.py)."""
    code = ("import sys, os; sys.argv = ['bmil', '--version']; from bmil import cli; cli.main(); "
            "import torch; from bmil.numerics import record; r = record(); "
            "print(r['portable'], r['torch_cpu_capability'], os.environ['MKL_CBWR'], r['torch_threads'])")
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")}
    pinned = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert pinned.stdout.split()[-4:] == ["True", "AVX2", "AVX2", "1"]
    compatible = subprocess.run([sys.executable, "-c", code], env={**env, "BMIL_NUMERICS": "compatible"},
                                capture_output=True, text=True, check=True)
    assert compatible.stdout.split()[-4:] == ["True", "AVX2", "COMPATIBLE", "1"]
    native = subprocess.run([sys.executable, "-c", code.replace("os.environ['MKL_CBWR']", "os.environ.get('MKL_CBWR')")],
                            env={**env, "BMIL_NUMERICS": "native"}, capture_output=True, text=True, check=True)
    assert native.stdout.split()[-4] == "False" and native.stdout.split()[-2] == "None"


def test_evaluation_workers_inherit_the_pins():
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        assert pool.submit(_capability).result() == ("AVX2", "AVX2")


def _capability():
    return torch.backends.cpu.get_cpu_capability(), os.environ.get("MKL_CBWR")


def test_a_damaged_run_record_is_named_not_overwritten(tmp_path):
    from bmil.numerics import record
    from bmil.trainer import _append_run_record

    _append_run_record(tmp_path, record(), None)
    _append_run_record(tmp_path, record(), "x/checkpoints/last.ckpt")
    starts = json.loads((tmp_path / "run.json").read_text())["starts"]
    assert [s["resumed_from"] for s in starts] == [None, "x/checkpoints/last.ckpt"]
    assert starts[0]["numerics"]["torch_cpu_capability"] == "AVX2" and starts[0]["numerics"]["portable"]
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(BMILError, match="run.json is damaged"):
        _append_run_record(tmp_path, record(), None)
    assert (tmp_path / "run.json").read_text() == "{not json"
