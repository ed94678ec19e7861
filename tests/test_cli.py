from pathlib import Path

import pytest

from bmil.cli import main


def test_demos_command(tmp_path, capsys):
    main(["demos", "--env", "push", "--num", "1", "--seed", "0", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert "wrote 1 push demos" in out and "expert success" in out
    assert (tmp_path / "d" / "bmil_demos.json").is_file()


def test_evaluate_command(tmp_path, capsys):
    png, js = tmp_path / "fig.png", tmp_path / "r.json"
    main(["evaluate", "--model.env", "push", "--policy", "random", "--episodes", "4",
          "--training_episodes", "1", "--workers", "0", "--plot", str(png), "--json_out", str(js)])
    out = capsys.readouterr().out
    assert "over 4 episodes" in out and png.stat().st_size > 1000
    import json

    record = json.loads(js.read_text())
    assert len(record["success"]) == 4 and record["robustness"]["episodes"] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demos", "--env", "pikplace"], "Unknown environment 'pikplace'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["demos", "--env", "push", "--num", "0"], "--num must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.timeout(20)
def test_an_exception_chain_that_loops_ends_the_search_for_a_users_error():
    """A fit whose run folder turned unwritable raised, while handling that, an error whose context
    was the first: the CLI's search for a BMILError in the chain spun for ever."""
    from bmil.cli import _user_error
    from bmil.errors import BMILError

    first, second = PermissionError("run folder"), OSError("while handling it")
    second.__context__, first.__context__ = first, second  # a loop, as Python builds none but code can
    assert _user_error(second) is None  # not a user's error: it is raised as it is
    wrapped = RuntimeError("parser")
    wrapped.__cause__ = BMILError("one line")
    wrapped.__cause__.__context__ = wrapped
    assert str(_user_error(wrapped)) == "one line"


@pytest.mark.parametrize("option", ["--json_out", "--plot"])
def test_an_output_that_cannot_be_written_is_refused_before_the_evaluation(option, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "out.json"  # a folder that is a file
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model.env", "push", "--policy", "random", "--episodes", "4", "--training_episodes", "1",
              "--workers", "0", option, str(target)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.err.strip().splitlines()[-1] == (
        f"bmil: error: {option} {target} cannot be written: {tmp_path / 'a_file'} is a file, not a folder; give another path.")
    assert "evaluated in" not in captured.out  # refused before the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing left behind


def test_unknown_flag_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["demos", "--env", "push", "--nmu", "3"])
    assert "--nmu" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "holds no settings"),
    ("# only a comment\n", "holds no settings"),
    ("model:\n  init_args: {env: push\n", "is not valid YAML at line 3, column 1"),
    ("config: no_such_family.yaml\n", "no_such_family.yaml' not found"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, content, message, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("bmil: error:") == 1 and message in err and "usage" not in err
    assert str(tmp_path) in err


def test_demos_refuse_a_foreign_folder_before_generating_and_fill_an_empty_one(tmp_path, capsys):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["demos", "--env", "push", "--num", "1", "--out", str(foreign), "--max_attempts", "1"])
    err = capsys.readouterr().err
    assert "exists and is not a bmil demonstration dataset; refusing to overwrite it" in err
    assert "demos push" not in err and (foreign / "mine.txt").read_text() == "keep me"  # nothing generated
    empty = tmp_path / "empty"
    empty.mkdir()
    main(["demos", "--env", "push", "--num", "1", "--out", str(empty)])
    assert (empty / "bmil_demos.json").is_file()


def _stop(cmd, signum, to_group, wait_s, after=None):
    """Start ``cmd`` in its own process group, let it work ``wait_s`` seconds (and until the path
    ``after`` exists, within 120 s: on a loaded machine a fit's first epoch can take long), send
    ``signum``; returns (exit code, seconds to exit, processes of the group left 3 s later, stderr,
    and all of these as one report for an assertion's message)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "bmil.cli", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(wait_s)
    deadline = time.monotonic() + 120
    while after is not None and not any(after.parent.glob(after.name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    t0 = time.monotonic()
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    code = proc.wait(timeout=60)
    seconds = time.monotonic() - t0
    time.sleep(3)
    left = [pid for pid in os.popen(f"pgrep -g {proc.pid}").read().split()]
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    err = proc.stderr.read()
    return code, seconds, left, err, f"exit {code} after {seconds:.1f} s, left {left}, stderr:\n{err[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("signame, to_group, code", [("SIGINT", True, 130), ("SIGTERM", False, 143)])
def test_interrupting_an_evaluation_ends_it_and_its_workers(signame, to_group, code):
    import signal

    cmd = ["evaluate", "--model.env", "push", "--policy", "random", "--episodes", "1000000", "--workers", "2"]
    exit_code, seconds, left, err, report = _stop(cmd, getattr(signal, signame), to_group, wait_s=10)
    assert exit_code == code and seconds < 10 and left == [], report
    assert f"bmil: interrupted ({signame})" in err and "Traceback" not in err, report


@pytest.mark.slow
def test_sigterm_stops_a_fit_with_its_checkpoint_whole(tmp_path, push_demos):
    import signal

    import torch

    cmd = ["fit", "--config", "conf/push.yaml", "--config", "conf/bc.yaml", "--model.demos.path", str(push_demos),
           "--model.demos.num", "2", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_epochs", "100000",
           "--training_success.every_n_epochs", "0", "--robustness.every_n_epochs", "0", "--robustness.final_episodes", "0"]
    ckpt = tmp_path / "push_bc" / "version_0" / "checkpoints" / "last.ckpt"
    exit_code, seconds, left, err, report = _stop(cmd, signal.SIGTERM, False, wait_s=12, after=ckpt)
    assert exit_code == 143 and seconds < 10 and left == [] and "bmil: interrupted (SIGTERM)" in err, report
    assert torch.load(ckpt, weights_only=False)["bmil"]["policy_step"] > 0


def test_the_cli_explains_itself(capsys):
    main(["--help"])
    overview = capsys.readouterr().out
    for command in ("fit", "evaluate", "validate", "test", "demos", "reproduce"):
        assert f"\n  {command} " in overview
    main(["--version"])
    assert capsys.readouterr().out.strip() == "bmil 0.1.0"
    with pytest.raises(SystemExit):
        main(["fit", "--trainer.max_epochs", "1"])
    err = capsys.readouterr().err
    assert "bmil fit needs a config: --config FILE, or a shipped config's name: ant_corridor7x7, " in err
    runs = err.split("name: ")[1].split(" (")[0].split(", ")
    assert "pickplace" in runs and "point_umaze" in runs
    assert not {"ant_maze", "point_maze", "bc", "noise_bc_fetch", "ccil", "vins_push"} & set(runs)  # layers, families
    assert "another method: a second --config, e.g. bc; all of them: bmil configs" in err


def test_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    """From a folder without conf/, --config takes a shipped config's name (with or without .yaml or
    conf/), and a file of that name there wins; bmil configs lists every name."""
    from bmil import configs

    monkeypatch.chdir(tmp_path)
    for value in ("pickplace", "pickplace.yaml", "conf/pickplace.yaml", "overlays/maze_quick"):
        assert Path(configs.resolve(value)).is_file() and Path(configs.resolve(value)).parent.parent.name in ("bmil", "conf")
    assert configs.as_files(["fit", "--config", "bc", "--config=examples/pointmaze_umaze", "--trainer.max_epochs", "bc"]) == [
        "fit", "--config", str(configs.SHIPPED / "bc.yaml"), f"--config={configs.SHIPPED / 'examples/pointmaze_umaze.yaml'}",
        "--trainer.max_epochs", "bc"]
    (tmp_path / "bc").write_text("trainer: {max_epochs: 3}\n")
    assert configs.resolve("bc") == "bc"  # the user's file, not the shipped one
    (tmp_path / "conf").mkdir()  # a folder of the user's own configs: a file missing there is an error, not ours
    assert configs.resolve("conf/pickplace.yaml") == "conf/pickplace.yaml" and configs.resolve("pickplace") != "pickplace"
    from bmil.cli import _config_files

    assert _config_files(["fit", "--config=a", "-c", "b", "--config", "c"]) == ["a", "b", "c"]  # layers in order
    assert configs.resolve("nosuch") == "nosuch"
    with pytest.raises(SystemExit):
        main(["check", "--config", "nosuch"])
    assert "config file 'nosuch' not found, and no shipped config has that name (bmil configs lists them)" in capsys.readouterr().err
    main(["configs"])
    listed = capsys.readouterr().out
    assert "  overlays/stability_eval  " in listed and "  pickplace  " in listed and len(listed.splitlines()) == len(configs.names()) + 1


def test_fit_help_leads_with_bmils_options_and_keeps_lightnings(capsys):
    main(["fit", "--help"])
    short = capsys.readouterr().out
    first = {option: short.find(option) for option in ("--model.demo_ratio", "--model.env ", "--robustness.final_episodes",
                                                       "--validation.every_n_epochs", "--trainer.max_epochs")}
    assert all(i > 0 for i in first.values()) and first["--trainer.max_epochs"] == max(first.values())
    assert "--trainer.gradient_clip_val" not in short
    main(["fit", "--help-all"])
    assert "--trainer.gradient_clip_val" in capsys.readouterr().out


@pytest.mark.parametrize("method, option", [("NoiseBC", "--model.noise.scale"), ("CCIL", "--model.ccil.tolerance")])
def test_method_help_named_in_fit_help_works_without_a_config(capsys, method, option):
    main(["fit", "--help"])
    assert "--model.help BC|CCIL|NoiseBC|VINS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--model.help", method])
    assert exit_.value.code == 0 and option in capsys.readouterr().out


@pytest.mark.parametrize("command", [["reproduce", "table1", "--domains", "push", "--seeds", "1"],
                                     ["tune", "--config", "conf/pickplace_quick.yaml", "--methods", "bc"]])
def test_an_out_folder_that_is_a_file_is_refused_before_the_work(command, user_folder, capsys):
    (user_folder / "taken").write_text("a file the user keeps")
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--out", "taken/study"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("bmil: error: --out ") and len(err.splitlines()) == 1
    assert "taken/study cannot be written: " in err and "taken is a file, not a folder" in err
    assert (user_folder / "taken").read_text() == "a file the user keeps"


@pytest.mark.parametrize("argv", [["fit", "--model.env.help"], ["fit", "--model.env.help", "GymEnvSpec"],
                                  ["fit", "--config", "conf/examples/pointmaze_umaze.yaml", "--model.env.help=GymEnvSpec"],
                                  ["check", "--model.help", "BC", "--model.env.help"]])
def test_env_help_named_in_fit_help_shows_the_env_settings_with_a_config_or_without(argv, capsys):
    main(["fit", "--help"])
    assert "--model.env.help      Show the settings of a gymnasium environment" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr().out
    assert exit_.value.code == 0, out
    assert all(f"--model.env.{option} " in out for option in ("id", "kwargs", "obs_keys", "horizon", "training.perturb",
                                                               "robustness.choices", "robustness.qpos_noise"))
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--model.env.help", "BMIL"])
    assert exit_.value.code == 2 and "--model.env.help shows the settings of a gymnasium environment" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    """bmil configs | head: the reader leaves first; bmil ends quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "bmil.cli", "configs"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before bmil has started writing (its imports take longer)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and "Traceback" not in err, err
