"""A fit that cannot write its run folder stops within seconds with one line naming the folder, and
`bmil check` refuses before any work what the fit would refuse (issue 65, cases 1, 7 and 8)."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bmil.cli import main
from bmil.files import atomic_path, remove_stale_temporaries

# Runs a fit with one writer of the run folder failing as a full disk or a read-only folder would.
DRIVER = r'''
import errno, os, sys
writer, code = sys.argv[1], getattr(errno, sys.argv[2])

def fail(path=None):
    raise OSError(code, os.strerror(code), *([str(path)] if path else []))

if writer == "events":  # TensorBoard's writer thread: a failed write names no file
    from tensorboard.summary.writer import record_writer
    record_writer.RecordWriter.write = lambda self, data: fail()
elif writer == "figures":
    import matplotlib.figure
    matplotlib.figure.Figure.savefig = lambda self, fname, *a, **k: fail(fname)
else:  # the atomic writes: a checkpoint, or a record
    suffix = {"checkpoints": "last.ckpt", "records": "validation.json"}[writer]
    replace = os.replace
    def failing_replace(src, dst, *args, **kwargs):
        if str(dst).endswith(suffix):
            fail(dst)
        return replace(src, dst, *args, **kwargs)
    os.replace = failing_replace
from bmil.cli import main
main(sys.argv[3:])
'''


@pytest.mark.slow
@pytest.mark.parametrize("writer, code", [("events", "ENOSPC"), ("checkpoints", "ENOSPC"), ("records", "EACCES"),
                                          ("figures", "EROFS")])
def test_a_run_folder_writer_that_fails_stops_the_fit_with_one_line(user_folder, writer, code):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", DRIVER, writer, code, "fit", "--config", "conf/pickplace_quick.yaml",
                           "--config", "tiny.yaml"], cwd=user_folder, capture_output=True, text=True, timeout=240)
    seconds = time.monotonic() - started
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith("bmil: error: bmil fit stopped in epoch ") and os.strerror(getattr(errno, code)) in last, last
    assert "the run folder runs/pickplace_quick/version_0 cannot be written" in last
    resume = "--ckpt_path runs/pickplace_quick/version_0/checkpoints/last.ckpt continues from its last checkpoint"
    kept = Path(user_folder, "runs/pickplace_quick/version_0/checkpoints/last.ckpt").is_file()
    assert kept == (writer == "figures")  # the others fail before the first checkpoint (events at the start)
    assert (resume in last) == kept and ("then run the fit again" in last) == (not kept)
    assert seconds < 120
    assert not list(Path(user_folder, "runs").rglob("*.tmp"))  # a failed write leaves no temporary behind


@pytest.mark.parametrize("args, message", [
    (["--trainer.logger.init_args.save_dir", "afile"], "the run folder (trainer.logger's save_dir, name and version) "
                                                        "afile/pickplace_quick/version_0 cannot be written: afile is a file"),
    (["--trainer.logger", "false", "--trainer.default_root_dir", "afile/runs"],
     "trainer.default_root_dir afile/runs cannot be written: afile is a file"),
    (["--checkpoint.dirpath", "afile/ck"], "checkpoint.dirpath"),
    (["--model.init_args.policy.lr", "abc"], "model.policy.lr = 'abc' is not valid (it takes: float, null)"),
    (["--model.init_args.policy.hidden", "[0]"], "unknown setting model.policy.hidden"),
    (["--robustness.success", "sometimes"], "robustness.success = sometimes is not valid (it takes: 'final', 'any')"),
    (["--trainer.devices", "abc"], "Lightning refuses these settings: `devices` selected with `CPUAccelerator`"),
    (["--checkpoint.every_n_train_steps", "-3"], "Lightning refuses these settings: Invalid value for every_n_train_steps"),
    (["--seed_everything", "-5"], "seed_everything = -5 is out of range: it must be a seed from 0 to 4294967295"),
    (["--model.init_args.env.horizon", "40"], "model.env was given settings under it (--model.env.<setting>), which "
                                              "then needs model.env.id; give them all as a block"),
])
def test_check_refuses_by_name_what_the_fit_would_die_on(user_folder, capsys, args, message):
    (user_folder / "afile").write_text("not a folder")
    for command in ("check", "fit"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--timed_epochs", "0", *args]
                 if command == "check" else [command, "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", *args])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert exited.value.code == 2 and last.startswith("bmil: error: ") and message in last, (command, last)
    assert not (user_folder / "runs").exists()


def test_an_evaluation_without_a_config_names_the_config(user_folder, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", "last.ckpt", "--episodes", "4"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "bmil: error: no method to run: give the run's config with --config (a run folder's config.yaml")


def test_an_oserror_that_is_not_a_write_into_the_run_folder_is_not_called_one(tmp_path):
    from bmil.trainer import _write_failure

    folder = str(tmp_path / "run")
    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / "validation.json"))
    wrapped = RuntimeError("Lightning's clean-up")
    wrapped.__context__ = inside
    assert _write_failure(wrapped, folder) is inside
    assert _write_failure(OSError(errno.ENOSPC, "No space left on device"), folder) is not None
    for other in (BrokenPipeError(errno.EPIPE, "Broken pipe"), TimeoutError("a worker"),
                  FileNotFoundError(errno.ENOENT, "No such file", "/opt/env/assets/robot.xml"),
                  PermissionError(errno.EACCES, "Permission denied", "/opt/env/assets/robot.xml")):
        assert _write_failure(other, folder) is None, other


def test_temporaries_of_killed_writers_are_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "checkpoints" / f".last.ckpt.{dead.stdout.strip()}.1234.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"")  # what a SIGKILL during a checkpoint write leaves
    with atomic_path(tmp_path / "record.json") as live:
        live.write_text("{}")
        assert remove_stale_temporaries(tmp_path) == [stale]
        assert live.exists() and not stale.exists()
    assert (tmp_path / "record.json").read_text() == "{}"


@pytest.mark.parametrize("args", [["demos", "--env", "push", "--num", "1", "--out", "afile/demos"],
                                  ["export", "--ckpt_path", "no.ckpt", "--out", "afile/policy.pt"]])
def test_demos_and_export_check_their_output_before_the_work(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SystemExit):
        main(args)
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"bmil: error: --out {args[-1]} cannot be written: afile is a file, not a folder; give another path."


@pytest.mark.slow
def test_check_refuses_a_resume_whose_run_record_is_damaged_as_the_fit_does(user_folder, capsys):
    base = ["--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--trainer.max_epochs", "1"]
    main(["fit", *base])
    run = user_folder / "runs" / "pickplace_quick" / "version_0"
    (run / "run.json").write_text("{not json")
    resume = [*base, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2"]
    for command in (["check", *resume, "--timed_epochs", "0"], ["fit", *resume]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(command)
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"bmil: error: {run / 'run.json'} is damaged"), (command[0], last)
    assert (run / "run.json").read_text() == "{not json"
    (run / "run.json").unlink()
    fewer = [*base, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "0"]
    for command in (["check", *fewer, "--timed_epochs", "0"], ["fit", *fewer]):  # Lightning: a traceback, after the setup
        with pytest.raises(SystemExit):
            main(command)
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"bmil: error: {run / 'checkpoints' / 'last.ckpt'} has trained 1 epochs, more than trainer.max_epochs 0: "
            "give --trainer.max_epochs 2 or more to train it further, or evaluate it with bmil evaluate.")
