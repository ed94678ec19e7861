"""``bmil reproduce``: study plans, the table's arithmetic, and skipping finished runs."""

import json
import math
import re
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import yaml

import bmil.runs.launch as launch
from bmil.errors import BMILError
from bmil.studies.catalog import SEARCHED, Run, Study, make_study, with_extra
from bmil.studies.report import collect, markdown_table, paper_table, plot_study, t_interval, write_results
from bmil.runs.launch import check_signature, fit_command
from bmil.studies.sweep import longest_first, run_study


def run_dir(out, run: Run):
    return run.folder(out).path


def test_t_interval_arithmetic():
    mean, hw = t_interval([1.0, 2.0, 3.0])  # sd 1, n 3: t_{0.975, 2} = 4.303
    assert mean == 2.0 and hw == pytest.approx(4.303 / math.sqrt(3))
    mean, hw = t_interval([10.0, 20.0])
    assert mean == 15.0 and hw == pytest.approx(12.706 * math.sqrt(50) / math.sqrt(2))
    assert math.isnan(t_interval([5.0])[1])


def _row(domain, method, seed, robustness, training=1.0):
    return {"run_id": f"{domain}{method}{seed}", "domain": domain, "method": method, "seed": seed,
            "robustness": robustness, "training_success": training, "family": "", "x": None}


def test_markdown_table_means_intervals_and_ratios():
    rows = [_row("push", "BC", 0, 0.10), _row("push", "BC", 1, 0.20), _row("push", "BC", 2, 0.30),
            _row("push", "BMIL", 0, 0.30), _row("push", "BMIL", 1, 0.40), _row("push", "BMIL", 2, 0.50, 0.5)]
    text = markdown_table(Study("table1", []), rows)
    head, rule, line = text.splitlines()
    assert head == "| domain | BC | BMIL | BMIL / BC | train. success BC | train. success BMIL |"
    hw = 4.303 * 10 / math.sqrt(3)
    assert line == f"| push | 20.0 ± {hw:.1f} (n=3) | 40.0 ± {hw:.1f} (n=3) | 2.00 | 1.00 | 0.83 |"
    unchecked = [_row("push", "BC", 0, 0.10, training=math.nan)]  # no training-success check ran
    assert markdown_table(Study("table1", []), unchecked).splitlines()[-1] == "| push | 10.0 (n=1) | - |"


def test_core_hours_sum_each_methods_runs_per_domain_and_overall():
    from bmil.studies.report import core_hours_table

    rows = [{**_row("push", "BC", s, 0.1), "seconds": 1800.0} for s in (0, 1)]
    rows += [{**_row("push", "CCIL", 0, 0.1), "seconds": 900.0}, {**_row("relocate", "BC", 0, 0.1), "seconds": 3600.0}]
    assert core_hours_table(rows).splitlines()[2:] == ["| push | 1.00 | 0.25 |", "| relocate | 1.00 | - |",
                                                      "| all | 2.00 | 0.25 |"]


def test_studies_plan_the_papers_comparisons():
    table1 = make_study("table1", ["push", "pickplace"], [0, 1])
    assert len(table1.runs) == 12 and {r.method for r in table1.runs} == {"BC", "VINS", "BMIL"}
    assert len({r.run_id for r in table1.runs}) == 12
    assert {r.configs for r in table1.runs if r.domain == "push"} == {
        ("conf/push.yaml",), ("conf/push.yaml", "conf/bc.yaml"), ("conf/push.yaml", "conf/vins_push.yaml")}
    fig6 = make_study("fig6", ["push"], [0])
    steps = {r.method: r.overrides for r in fig6.runs}
    assert steps["BC 20x"] == ("--model.policy.steps_per_epoch", "2000")  # 20 x push's M = 100
    fig5a = make_study("fig5a", ["pickplace"], [0])
    assert ("--model.traces.action_selection", "rs", "--model.traces.selection_coef", "0.5") in [r.overrides for r in fig5a.runs]
    # Every run's settings resolve, with its method's class.
    classes = {r.method: r.settings["model"]["class_path"] for r in table1.runs}
    assert classes == {"BC": "bmil.methods.BC", "VINS": "bmil.methods.VINS", "BMIL": "bmil.methods.BMIL"}
    baselines = make_study("baselines", ["push"], [0])
    classes = {r.method: r.settings["model"]["class_path"] for r in baselines.runs}
    assert classes == {"BC": "bmil.methods.BC", "NoiseBC": "bmil.methods.NoiseBC", "CCIL": "bmil.methods.CCIL",
                       "VINS": "bmil.methods.VINS", "BMIL": "bmil.methods.BMIL"}
    policy = {r.method: r.settings["model"]["init_args"]["policy"] for r in baselines.runs}
    assert all(p == policy["BC"] for p in policy.values())  # one policy budget for every method
    with pytest.raises(Exception, match="unknown study"):
        make_study("table9", ["push"], [0])


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    run = Run("push", "BMIL", 0, ("conf/push.yaml",))
    assert "--ckpt_path" not in fit_command(tmp_path, run)
    ckpt = run_dir(tmp_path, run) / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert fit_command(tmp_path, run)[-2:] == ["--ckpt_path", str(ckpt)]


def _tiny_configs(folder, demos):
    bmil = {
        "trainer": {"max_epochs": 2, "enable_model_summary": False},
        "training_success": {"every_n_epochs": 1, "episodes": 1},
        "robustness": {"every_n_epochs": 0, "final_episodes": 4, "figures": False},
        "model": {"class_path": "bmil.methods.BMIL",
                  "init_args": {"env": "push", "demos": {"path": str(demos), "num": 2}, "demo_ratio": 0.5,
                                "policy": {"batch_size": 16, "steps_per_epoch": 5},
                                "model": {"training": "steps", "steps": 2}}},
    }
    folder.mkdir()
    (folder / "push.yaml").write_text(yaml.safe_dump(bmil))
    (folder / "bc.yaml").write_text(yaml.safe_dump({"model": {"class_path": "bmil.methods.BC"}}))
    vins = {"value_steps": 2, "value_batch_size": 8, "model_steps": 2, "model_batch_size": 8, "candidates": 4,
            "perturb_dims": [0, 1, 2]}
    (folder / "vins_push.yaml").write_text(
        yaml.safe_dump({"model": {"class_path": "bmil.methods.VINS", "init_args": {"vins": vins}}}))


@pytest.mark.slow
def test_a_rerun_executes_only_the_missing_runs(tmp_path, push_demos):
    _tiny_configs(tmp_path / "conf", push_demos)
    study = make_study("selection", ["push"], [0, 1], configs=str(tmp_path / "conf"))  # BC and BMIL
    out = tmp_path / "study"
    results = run_study(study, out, jobs=2, progress=lambda *_: None)
    assert len(results) == 4 and not any(r.get("failed") for r in results)
    # An interrupted sweep: one run never finished (its result is missing).
    lost = study.runs[1]
    first = {r.run_id: (run_dir(out, r) / "result.json").stat().st_mtime_ns for r in study.runs}
    (run_dir(out, lost) / "result.json").unlink()
    messages = []
    rerun = run_study(study, out, jobs=2, progress=messages.append)
    assert [r["run_id"] for r in rerun] == [lost.run_id]
    assert "3 already done, running 1" in messages[0]
    for r in study.runs:
        if r != lost:
            assert (run_dir(out, r) / "result.json").stat().st_mtime_ns == first[r.run_id]
    rows = collect(study, out)
    assert len(rows) == 4 and all(row["episodes"] == 4 and row["training_success"] in (0.0, 1.0) for row in rows)
    table = write_results(study, out).read_text()
    assert "| push |" in table and "(n=2)" in table
    assert len((out / "results.csv").read_text().splitlines()) == 5
    assert json.loads((run_dir(out, lost) / "result.json").read_text())["resumed"] is True
    # The record kept in git (docs/reproducing.md): each run's result.json and signature.json alone,
    # no checkpoints or logs, is a finished study: nothing reruns and the table is the same.
    kept = tmp_path / "kept"
    for r in study.runs:
        run_dir(kept, r).mkdir(parents=True)
        for name in ("result.json", "signature.json"):
            shutil.copy(run_dir(out, r) / name, run_dir(kept, r) / name)
    messages.clear()
    assert run_study(study, kept, jobs=2, progress=messages.append) == []
    assert "4 already done, running 0" in messages[0]
    assert write_results(study, kept).read_text() == table
    # Other settings into the same folder: refused, nothing reused or overwritten.
    shorter = Study(study.name, with_extra(study.runs, ["--trainer.max_epochs", "1"], {}))
    with pytest.raises(BMILError, match="made with other settings"):
        run_study(shorter, out, jobs=2, progress=lambda *_: None)


def test_a_checkpoint_carried_without_its_signature_is_not_resumed(tmp_path):
    run = Run("push", "BC", 0, ("conf/push.yaml", "conf/bc.yaml"))
    folder = run_dir(tmp_path, run)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint of unknown settings")
    with pytest.raises(BMILError, match="no signature.json.*Copy the run's signature.json"):
        run_study(Study("table1", [run]), tmp_path, jobs=1, progress=lambda *_: None)
    (folder / "signature.json").write_text(json.dumps({"signature": run.signature}))
    check_signature(tmp_path, run)  # with it, the run may resume


def test_run_settings_are_read_as_the_run_will_see_them(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "bmil.methods.BC",
                                                "init_args": {"env": "push", "demos": {"num": 5}}}}))

    def demos(*extra):
        return Run("push", "BC", 0, (str(config),), extra=extra).settings["model"]["init_args"]["demos"]

    assert demos()["num"] == 5
    assert demos("--model.demos.num", "3", "--model.demos.num=7")["num"] == 7
    assert demos()["seed"] == 0  # the method's default
    assert demos("--model.demos.stop_on_success", "true")["stop_on_success"] is True
    overlay = tmp_path / "overlay.yaml"  # a --config overlay in --extra counts where it stands
    overlay.write_text(yaml.safe_dump({"model": {"init_args": {"demos": {"num": 9}}}, "trainer": {"max_epochs": 1}}))
    assert demos("--config", str(overlay))["num"] == 9
    assert demos("-c", str(overlay))["num"] == 9  # LightningCLI's short flag
    assert demos("--model.demos.num", "3", "--config", str(overlay))["num"] == 9
    assert demos("--config", str(overlay), "--model.demos.num", "3")["num"] == 3
    model = tmp_path / "model.yaml"  # a whole model section from a file
    model.write_text(yaml.safe_dump({"class_path": "bmil.methods.BC", "init_args": {"demos": {"num": 4}}}))
    assert demos(f"--model={model}")["num"] == 4
    with pytest.raises(BMILError, match="do not parse"):
        demos("--model.demos.numm", "3")


def test_reproduce_command_rejects_unknown_names_clearly(tmp_path, capsys):
    from bmil.cli import main

    for args, message in ((["table1", "--domains", "pushh"], "Unknown environment 'pushh'"),
                          (["table9"], "unknown study 'table9'")):
        with pytest.raises(SystemExit) as exit_info:
            main(["reproduce", *args, "--out", str(tmp_path / "r")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_ablation_plots_are_written(tmp_path):
    bar = [_row("pickplace", m, s, v) for m, v in (("None", 0.2), ("SC(30)", 0.6)) for s in (0, 1)]
    line = [{**_row("pickplace", f"BC {n} demos", s, 0.1 * n), "family": "BC", "x": n} for n in (1, 5) for s in (0, 1)]
    line += [_row("pickplace", "BMIL", s, 0.5) for s in (0, 1)]
    plot_study(Study("fig5a", [], plot="bar"), bar, tmp_path / "bar.png")
    plot_study(Study("fig6", [], plot="line"), line, tmp_path / "line.png")
    assert (tmp_path / "bar.png").stat().st_size > 1000 and (tmp_path / "line.png").stat().st_size > 1000


def test_signature_follows_config_overlays_in_extra(tmp_path):
    config, overlay = tmp_path / "c.yaml", tmp_path / "overlay.yaml"
    config.write_text("model: {class_path: bmil.methods.BC, init_args: {env: push}}\n")
    overlay.write_text("trainer: {max_epochs: 5}\n")
    run = Run("push", "BC", 0, (str(config),), extra=("--config", str(overlay)))
    before = run.signature
    assert run.signature == before and replace(run, extra=()).signature != before
    renamed = tmp_path / "renamed.yaml"  # the same settings from another file: the same run
    renamed.write_text("trainer: {max_epochs: 5}  # moved\n")
    assert replace(run, extra=("--config", str(renamed))).signature == before
    overlay.write_text("trainer: {max_epochs: 6}\n")  # same arguments, other settings
    assert replace(run).signature != before  # (a Run resolves its settings once)


def test_the_longest_runs_start_first():
    fig6 = make_study("fig6", ["push"], [0, 1])
    order = [(r.method, r.seed) for r in longest_first(fig6.runs)]
    assert order[:2] == [("BC 20x", 0), ("BC 20x", 1)] and order[2:4] == [("BC 10x", 0), ("BC 10x", 1)]
    assert order[-4:] == [("BMIL", 0), ("BMIL", 1), ("BC 1x", 0), ("BC 1x", 1)]  # same steps: traces first
    assert len(set(longest_first(fig6.runs))) == len(fig6.runs)
    table1 = make_study("table1", ["pickplace"], [0, 1])
    assert [r.method for r in longest_first(table1.runs)] == ["VINS", "VINS", "BMIL", "BMIL", "BC", "BC"]


# A stand-in for ``bmil fit``: records its pid in the run folder, then either finishes, writing its
# record as a fit does (bmil.runs.record), or waits to be stopped.
_FAKE_FIT = """
import json, os, sys, time
from pathlib import Path
from bmil.runs.record import RunClock, write_result
folder, wait = Path(sys.argv[1]), float(sys.argv[2])
resumed = (folder / "checkpoints" / "last.ckpt").is_file()
(folder / "pid").write_text(str(os.getpid()))
with RunClock(folder, resumed) as clock:
    time.sleep(wait)
    json.dump({"success_rate": 0.5, "ci95": [0.4, 0.6], "episodes": 10}, open(folder / "robustness_final.json", "w"))
write_result(folder, clock.seconds, resumed)
"""


def _fake_study(tmp_path, monkeypatch, seeds, wait):
    import sys

    config = tmp_path / "push.yaml"  # given demos: nothing to generate
    config.write_text("model: {class_path: bmil.methods.BC, init_args: {env: push, demos: {path: given}}}\n")
    monkeypatch.setattr(launch, "fit_command",
                        lambda out, run, workers, **_: [sys.executable, "-c", _FAKE_FIT, str(run_dir(out, run)), str(wait)])
    return Study("table1", [Run("push", "BC", s, (str(config),)) for s in seeds]), tmp_path / "study"


def test_a_run_that_another_process_is_running_is_left_alone(tmp_path, monkeypatch):
    import subprocess
    import sys

    study, out = _fake_study(tmp_path, monkeypatch, [0], wait=0)
    folder = run_dir(out, study.runs[0])
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(folder / "run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # an orphaned fit of a killed sweep, say
        messages = []
        (result,) = run_study(study, out, jobs=1, progress=messages.append)
        assert result["failed"] and "another process is running it" in messages[-1]
        assert not (folder / "pid").exists() and not (folder / "result.json").exists()
    finally:
        holder.kill()
        holder.wait()
    (result,) = run_study(study, out, jobs=1, progress=lambda *_: None)  # lock free: it runs
    assert not result.get("failed") and result["robustness"] == 0.5
    assert (folder / "result.json").is_file()


def test_a_stopped_executor_hands_ctrl_c_back(ctrl_c_raises):
    import signal

    from bmil.executors.local import LocalExecutor

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with pytest.raises(RuntimeError):  # a failure inside stops the executor, which holds off signals meanwhile
        with LocalExecutor(1):
            raise RuntimeError("a failure inside a tune")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stopping_a_study_stops_its_fits(tmp_path, monkeypatch):
    import fcntl
    import os
    import signal
    import threading
    import time

    study, out = _fake_study(tmp_path, monkeypatch, [0, 1, 2], wait=20)
    pid_files = [run_dir(out, r) / "pid" for r in study.runs]

    def send_sigterm_once_two_fits_run():
        deadline = time.monotonic() + 10
        while sum(p.exists() for p in pid_files) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid of bmil reproduce>` would

    received = []  # SIGTERM lands here if the sweep does not handle it itself (pytest lives on)
    record = lambda *args: received.append(args)  # noqa: E731
    original = signal.signal(signal.SIGTERM, record)
    try:
        threading.Thread(target=send_sigterm_once_two_fits_run, daemon=True).start()
        t0 = time.monotonic()
        with pytest.raises(SystemExit):
            run_study(study, out, jobs=2, progress=lambda *_: None)
        assert time.monotonic() - t0 < 15  # the fits were stopped, not waited for (they sleep 20 s)
        assert not received and signal.getsignal(signal.SIGTERM) is record  # handled, then handed back
    finally:
        signal.signal(signal.SIGTERM, original)
    started = [p for p in pid_files if p.exists()]
    assert len(started) == 2 and not pid_files[2].exists()  # the third never started
    for p in started:
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.read_text()), 0)
        fd = os.open(p.parent / "run.lock", os.O_RDWR)  # and no one holds the runs' locks any more
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_methods_runs_only_those_and_the_table_shows_every_finished_run(tmp_path, monkeypatch):
    study, out = _fake_study(tmp_path, monkeypatch, [0, 1], wait=0)
    study = Study("table1", [Run(r.domain, m, r.seed, r.configs) for r in study.runs for m in ("BC", "VINS")])
    messages = []
    results = run_study(study, out, jobs=2, progress=messages.append, methods={"BC"})
    assert sorted(r["run_id"] for r in results) == ["push__BC__s0", "push__BC__s1"]
    assert "running 2 (2 at a time), leaving 2 of other methods" in messages[0]
    table = write_results(study, out).read_text()
    assert "2 of 4 runs finished" in table and "| push | 50.0 ± 0.0 (n=2) |" in table
    results = run_study(study, out, jobs=2, progress=messages.append)  # then the rest
    assert sorted(r["run_id"] for r in results) == ["push__VINS__s0", "push__VINS__s1"]
    assert "4 of 4 runs finished" in write_results(study, out).read_text()


def test_reproduce_rejects_an_unknown_method_clearly(tmp_path, capsys):
    from bmil.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "table1", "--domains", "push", "--methods", "BC,BMILL", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "unknown method(s) BMILL for study 'table1'. Its methods: BC, VINS, BMIL." in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_tunes_fit_ends_with_its_killed_driver(tmp_path):
    """A tune's executor (die_with_driver): its fits get SIGTERM when the driver dies, even by SIGKILL,
    so that a rerun does not find their runs held by orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "push.yaml"
    config.write_text("model: {class_path: bmil.methods.BC, init_args: {env: push, demos: {path: given}}}\n")
    out = tmp_path / "tune"
    driver = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
import bmil.runs.launch as L
from bmil.executors import make_executor
from bmil.studies.catalog import Run
L.fit_command = lambda out, run, workers, **_: [sys.executable, "-c", {_FAKE_FIT!r}, str(run.folder(out)), "60"]
with make_executor("local", 1, die_with_driver=True) as executor:
    executor.submit(Path({str(out)!r}), Run("push", "BC", 0, ({str(config)!r},))).result()
"""])
    folder = run_dir(out, Run("push", "BC", 0, (str(config),)))
    deadline = time.monotonic() + 60
    while not (folder / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    fit = int((folder / "pid").read_text())
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.path.exists(f"/proc/{fit}") and \
            open(f"/proc/{fit}/stat").read().split()[2] != "Z":
        time.sleep(0.1)
    alive = os.path.exists(f"/proc/{fit}") and open(f"/proc/{fit}/stat").read().split()[2] != "Z"
    if alive:
        os.kill(fit, signal.SIGKILL)
    assert not alive, "the tune's fit outlived its driver"


def test_a_fit_orphaned_by_a_killed_sweep_keeps_its_run_locked(tmp_path):
    import fcntl
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "push.yaml"
    config.write_text("model: {class_path: bmil.methods.BC, init_args: {env: push, demos: {path: given}}}\n")
    out = tmp_path / "study"
    sweep = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
import bmil.runs.launch as L
from bmil.studies.catalog import Run, Study
from bmil.studies.sweep import run_study
L.fit_command = lambda out, run, workers, **_: [sys.executable, "-c", {_FAKE_FIT!r}, str(run.folder(out)), "30"]
run_study(Study("table1", [Run("push", "BC", 0, ({str(config)!r},))]), Path({str(out)!r}), 1)
"""])
    folder = run_dir(out, Run("push", "BC", 0, (str(config),)))
    deadline = time.monotonic() + 60
    while not (folder / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    orphan = int((folder / "pid").read_text())
    sweep.send_signal(signal.SIGKILL)  # no clean-up possible: the fit lives on
    sweep.wait()

    def locked() -> bool:
        fd = os.open(folder / "run.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    try:
        assert locked()  # held by the orphaned fit, which inherited the sweep's descriptor
    finally:
        os.kill(orphan, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not locked()


def test_a_run_finished_by_another_sweep_while_queued_is_not_run_again(tmp_path, monkeypatch):
    import sys

    from bmil.executors.local import _Fits, execute

    study, out = _fake_study(tmp_path, monkeypatch, [0], wait=0)
    (run,) = study.runs
    run_dir(out, run).mkdir(parents=True)
    (run_dir(out, run) / "result.json").write_text(json.dumps({"run_id": run.run_id, "robustness": 0.25}))
    assert execute(out, run, _Fits())["robustness"] == 0.25  # the other sweep's result, as it is
    assert not (run_dir(out, run) / "pid").exists()  # no fit started
    stopped = _Fits()
    stopped.stop()
    assert stopped.start([sys.executable, "-c", "pass"]) is None  # and none starts once a study stops


def test_the_papers_numbers_are_printed_beside_ours():
    text = paper_table(Study("table1", []), ["pickplace", "point_room5x11", "unknown"])
    assert text.splitlines() == [
        "| domain | BC | VINS | BMIL | VINS / BC | BMIL / BC |",
        "| --- | --- | --- | --- | --- | --- |",
        "| pickplace | 4.1 | 3.4 | 17.5 | 0.83 | 4.27 |",  # the paper rounds its ratios from unrounded means
        "| point_room5x11 | 36.8 | 17.3 | 38.6 | 0.47 | 1.05 |",
    ]
    assert paper_table(Study("fig5a", []), ["pickplace"]) == ""
    assert paper_table(Study("table1", []), ["unknown"]) == ""


def test_domain_extra_gives_each_family_of_domains_its_own_arguments(tmp_path):
    study = make_study("table1", ["push", "point_umaze", "point_room5x11"], [0])
    runs = with_extra(study.runs, ["--trainer.max_epochs", "3"],
                      {"point_*": "--config maze.yaml", "push,point_room5x11": "--model.demos.num 5",
                       "pickplace": "--config fetch.yaml"})  # a key for domains not in this study: unused
    extra = {r.domain: r.extra for r in runs}
    assert extra["push"] == ("--trainer.max_epochs", "3", "--model.demos.num", "5")
    assert extra["point_umaze"] == ("--trainer.max_epochs", "3", "--config", "maze.yaml")
    assert extra["point_room5x11"] == ("--trainer.max_epochs", "3", "--config", "maze.yaml", "--model.demos.num", "5")
    assert runs[-1].fit_args()[-6:] == list(extra["point_room5x11"])
    assert fit_command(tmp_path, runs[-1])[4:6] == ["--config", str(runs[-1].folder(tmp_path) / "run.yaml")]
    # The same arguments given for every run or for a domain: the same run, found finished.
    overlay = tmp_path / "maze.yaml"
    overlay.write_text("trainer: {max_epochs: 5}\n")
    everywhere = with_extra(study.runs, ["--config", str(overlay)], {})
    by_domain = with_extra(study.runs, [], {"point_*": f"--config {overlay}"})
    mazes = [i for i, r in enumerate(study.runs) if r.domain != "push"]
    assert [everywhere[i].signature for i in mazes] == [by_domain[i].signature for i in mazes]
    assert everywhere[0].signature != by_domain[0].signature  # push got the overlay only from --extra
    with pytest.raises(BMILError, match="'psuh' matches no known domain"):
        with_extra(study.runs, [], {"pickplace,psuh": "--config x.yaml"})


def test_unbalanced_quotes_in_extra_args_are_one_clear_error(tmp_path, capsys):
    from bmil.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "table1", "--domains", "push", "--out", str(tmp_path), "--extra", '--config "a.yaml'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--extra '--config \"a.yaml': No closing quotation; balance its quotes." in err
    assert "Traceback" not in err


def test_fits_evaluate_over_the_cores_that_fewer_runs_than_jobs_leave_idle(tmp_path, monkeypatch):
    import sys

    study, out = _fake_study(tmp_path, monkeypatch, [0, 1, 2], wait=0)
    given = {}

    def command(out, run, workers, **_):
        given[run.seed] = workers
        return [sys.executable, "-c", _FAKE_FIT, str(run_dir(out, run)), "0"]

    monkeypatch.setattr(launch, "fit_command", command)
    run_study(Study("table1", study.runs[:1]), out, jobs=2, progress=lambda *_: None)
    assert given == {0: 2}  # alone in a 2-job study: both cores
    run_study(Study("table1", study.runs[1:]), out, jobs=2, progress=lambda *_: None)
    assert given == {0: 2, 1: 0, 2: 0}  # one run per core: in process
    assert fit_command(tmp_path, study.runs[0], 2)[-6:] == ["--training_success.workers", "2", "--robustness.workers", "2",
                                                         "--validation.workers", "2"]


@pytest.mark.parametrize("resumed", [True, False])
def test_a_resumed_run_reports_the_time_of_all_its_invocations(tmp_path, monkeypatch, resumed):
    from bmil.runs import record as run_record

    monkeypatch.setattr(run_record, "CLOCK_EVERY_S", 0.05)
    (tmp_path / "elapsed.json").write_text('{"seconds": 1000.0}')  # an earlier invocation's part, then killed
    with run_record.RunClock(tmp_path, resumed) as clock:
        time.sleep(0.3)
        # The clock is kept on disk while the fit runs (a kill loses at most CLOCK_EVERY_S of it) ...
        seen = json.loads((tmp_path / "elapsed.json").read_text())["seconds"]
    # ... and counts from the earlier part only when the fit resumes from that part's checkpoint.
    before = 1000.0 if resumed else 0.0
    assert before + 0.05 <= seen < clock.seconds < before + 30
    assert json.loads((tmp_path / "elapsed.json").read_text())["seconds"] == clock.seconds


@pytest.mark.parametrize("damaged", ['{"seconds": 10', '{"second": 10}', '{"seconds": "10"}', "[1]"])
def test_a_damaged_clock_file_fails_its_run_with_a_message_naming_the_file(tmp_path, monkeypatch, damaged):
    study, out = _fake_study(tmp_path, monkeypatch, [0], wait=0)
    folder = run_dir(out, study.runs[0])
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "signature.json").write_text(json.dumps({"signature": study.runs[0].signature}))
    (folder / "elapsed.json").write_text(damaged)
    (result,) = run_study(study, out, jobs=1, progress=lambda *_: None)
    assert result["failed"]
    assert f"{folder / 'elapsed.json'} is damaged (" in result["error"]
    assert "restore it (git checkout) or delete it" in result["error"]
    assert not (folder / "robustness_final.json").exists()  # the fit never started
    assert (folder / "elapsed.json").read_text() == damaged  # nothing the user has is overwritten


@pytest.mark.parametrize("name", ["result.json", "signature.json"])
def test_a_damaged_run_record_stops_the_study_with_a_message_naming_the_file(tmp_path, monkeypatch, name):
    study, out = _fake_study(tmp_path, monkeypatch, [0], wait=0)
    path = run_dir(out, study.runs[0]) / name
    path.parent.mkdir(parents=True)
    path.write_text('{"signature": ')
    with pytest.raises(BMILError, match=rf"{re.escape(str(path))} is damaged \(JSONDecodeError: .*\); restore it \(git checkout\) or "):
        run_study(study, out, jobs=1, progress=lambda *_: None)
    assert path.read_text() == '{"signature": '  # nothing the user has is overwritten


def test_tables_show_the_last_and_the_best_by_validation_policy_and_curves(tmp_path):
    from bmil.studies.catalog import Run, Study
    from bmil.studies.report import write_results

    runs = [Run("push", m, s, ("conf/push.yaml",)) for m in ("BC", "BMIL") for s in (0, 1)]
    for i, run in enumerate(runs):
        folder = run_dir(tmp_path, run)
        folder.mkdir(parents=True)
        last, best = 0.1 * (i + 1), 0.2 * (i + 1)
        (folder / "result.json").write_text(json.dumps({
            "run_id": run.run_id, "domain": "push", "method": run.method, "seed": run.seed, "x": None,
            "family": "", "robustness": last, "robustness_ci_low": 0, "robustness_ci_high": 1,
            "episodes": 10, "training_success": 1.0, "seconds": 1.0, "best_robustness": best,
            "best_robustness_ci_low": 0, "best_robustness_ci_high": 1, "best_epoch": 10 * (i + 1),
            "best_validation": 0.5}))
        (folder / "validation.json").write_text(json.dumps(
            {"best_epoch": 10, "best_rate": 0.5, "history": [{"epoch": 10, "rate": 0.5}, {"epoch": 20, "rate": 0.25}]}))
    table = write_results(Study("t", runs), tmp_path).read_text()
    last_table, best_part = table.split("chosen on validation starts")
    assert "| push | 15.0 ± 63.5 (n=2) | 35.0 ± 63.5 (n=2) | 2.33 |" in last_table  # (10, 20) and (30, 40)
    assert "| push | 30.0 ± 127.1 (n=2) | 70.0 ± 127.1 (n=2) | 2.33 | - | - |" in best_part
    assert "| push | BMIL | 30.0 / 60.0 (ep. 30) | 40.0 / 80.0 (ep. 40) |" in best_part
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == ["push__BC.png", "push__BMIL.png"]


def test_the_table_reports_how_often_episodes_end_flagged(tmp_path, monkeypatch):
    import sys

    study, out = _fake_study(tmp_path, monkeypatch, [0, 1], wait=0)
    run_study(study, out, jobs=2, progress=lambda message: None)
    assert "ended flagged" not in write_results(study, out).read_text()  # no domain flags: no section
    # Push fits whose final test counts flips: 20% (seed 0) and 40% (seed 1) of 10 episodes; a
    # pickplace fit beside them whose domain has no flags gets no row in that section.
    flagged = _FAKE_FIT.replace('"episodes": 10}',
                                '"episodes": 10, **({"flags": {"flipped": 2 if "__s0" in str(folder) else 4}} if "push__" in str(folder) else {})}')
    monkeypatch.setattr(launch, "fit_command", lambda out, run, workers, **_: [sys.executable, "-c", flagged, str(run_dir(out, run)), "0"])
    study = Study("table1", [*study.runs, Run("pickplace", "BC", 0, study.runs[0].configs)])
    out = tmp_path / "flagged"
    run_study(study, out, jobs=2, progress=lambda message: None)
    table = write_results(study, out).read_text()
    assert "| domain | method | flipped at the end (%) |" in table and "| push | BC | 30.0 |" in table
    assert "| pickplace | 50.0 (n=1) |" in table and "| pickplace | BC |" not in table
    assert [row.get("flag_flipped") for row in collect(study, out)] == [0.2, 0.4, None]
    assert "flag_flipped" in (out / "results.csv").read_text().splitlines()[0]


def test_baselines_use_the_family_settings_the_search_chose(tmp_path):
    tmp_path = shutil.copytree("conf", tmp_path / "conf")
    for method in SEARCHED:  # the search's real choices: replaced by these
        for chosen in tmp_path.glob(f"{method}_*.yaml"):
            chosen.unlink()
    (tmp_path / "noise_bc_fetch.yaml").write_text("model: {class_path: bmil.methods.NoiseBC, init_args: {noise: {scale: 0.3}}}\n")
    (tmp_path / "bmil_fetch.yaml").write_text("model.init_args.demo_ratio: 0.8\n")
    runs = make_study("baselines", ["push", "point_umaze"], [0], configs=str(tmp_path)).runs
    layers = {(r.domain, r.method): [c.rsplit("/", 1)[-1] for c in r.configs] for r in runs}
    assert layers[("push", "NoiseBC")] == ["push.yaml", "noise_bc.yaml", "noise_bc_fetch.yaml"]
    assert layers[("push", "BMIL")] == ["push.yaml", "bmil_fetch.yaml"]
    assert layers[("push", "CCIL")] == ["push.yaml", "ccil.yaml"]  # no choice for CCIL: its defaults
    assert layers[("point_umaze", "NoiseBC")] == ["point_umaze.yaml", "noise_bc.yaml"]  # nor for the point mazes
    # VINS is not searched: its family file (conf/vins_fetch.yaml) is already under vins_push.yaml.
    assert layers[("push", "VINS")] == ["push.yaml", "vins_push.yaml"]
    init = {(r.domain, r.method): r.settings["model"]["init_args"] for r in runs}
    assert init[("push", "NoiseBC")]["noise"]["scale"] == 0.3 and init[("push", "BMIL")]["demo_ratio"] == 0.8
    table1_bmil = make_study("table1", ["push"], [0], configs=str(tmp_path)).runs[-1]  # the paper's settings
    assert table1_bmil.method == "BMIL" and table1_bmil.settings["model"]["init_args"]["demo_ratio"] == 0.5


def test_each_domains_final_tests_are_drawn_side_by_side(tmp_path):
    from bmil.domains import get_domain
    from bmil.studies.report import compare_figures
    from PIL import Image

    domain = get_domain("point_umaze")
    starts = domain.robustness_starts(26, seed=0)
    runs = [Run("point_umaze", m, s, ("conf/point_umaze.yaml",)) for m in ("BC", "BMIL") for s in (0, 1)]
    for run in runs:
        folder = run_dir(tmp_path, run)
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
        success = [run.method == "BMIL" or i % 2 == 0 for i in range(len(starts))]
        (folder / "robustness_final.json").write_text(json.dumps(
            {"starts": starts.tolist(), "success": success, "success_mode": "final"}))
    paths = compare_figures(Study("table1", runs), tmp_path)
    assert paths == [tmp_path / "compare" / "point_umaze__s0.png"]
    from bmil.evaluation import EvalResult
    from bmil.plots import figure_to_array

    one = EvalResult.of(domain, starts, np.ones(len(starts), dtype=bool), np.zeros(len(starts), dtype=int))
    panel = figure_to_array(domain.robustness_figure(one)).shape
    width, height = Image.open(paths[0]).size
    assert width >= 1.9 * panel[1] and height >= panel[0]  # two panels in a row, each at full size
    assert compare_figures(Study("table1", runs[2:3]), tmp_path) == []  # one method: nothing to compare


def test_a_study_takes_the_finished_runs_of_another_made_with_the_same_settings(tmp_path, monkeypatch):
    from bmil.studies import reproduce

    study, out = _fake_study(tmp_path, monkeypatch, [0, 1], wait=0)
    run_study(study, out, jobs=2, progress=lambda message: None)
    (run_dir(out, study.runs[1]) / "result.json").write_text(  # seed 1 was made with other settings
        (run_dir(out, study.runs[1]) / "result.json").read_text().replace('"signature": "', '"signature": "x'))
    messages = []
    results = run_study(study, tmp_path / "other", jobs=2, progress=messages.append, reuse=[out])
    assert "took 1 finished runs made with the same settings" in messages[0]
    assert [r["run_id"] for r in results] == [study.runs[1].run_id]  # only the mismatched one ran
    taken = run_dir(tmp_path / "other", study.runs[0])
    assert (taken / "result.json").read_text() == (run_dir(out, study.runs[0]) / "result.json").read_text()
    assert (taken / "robustness_final.json").is_file()
    with pytest.raises(BMILError, match="--reuse .*nowhere: not a study folder"):
        reproduce("table1", domains="push", seeds=1, out=str(tmp_path / "third"), reuse=str(tmp_path / "nowhere"))
    assert not (tmp_path / "third").exists()  # refused before anything is written


def test_a_plan_counts_the_runs_to_do_and_their_core_hours_from_recorded_times(tmp_path, monkeypatch, capsys):
    from bmil.studies.sweep import plan

    study, out = _fake_study(tmp_path, monkeypatch, [0, 1, 2], wait=0)
    run_study(Study("table1", study.runs[:1]), out, jobs=1, progress=lambda *_: None)
    seconds = json.loads((run_dir(out, study.runs[0]) / "result.json").read_text())["seconds"]
    text = plan(study, out)
    assert f"| push | BC | 2 | 1 | {2 * seconds / 3600:.2f} |" in text
    assert "table1: 2 runs to do" in text and "Nothing was run" in text
    assert not run_dir(out, study.runs[1]).exists()
    other = Study("table1", [Run("pickplace", "BMIL", 0, study.runs[0].configs)])
    assert "| pickplace | BMIL | 1 | 0 | ? |" in plan(other, out) and "1 runs with no recorded time" in plan(other, out)


def test_reproduce_plan_runs_nothing(tmp_path, capsys):
    from bmil.cli import main

    main(["reproduce", "table1", "--domains", "push", "--seeds", "2", "--out", str(tmp_path / "r"), "--plan"])
    out = capsys.readouterr().out
    assert "| push | VINS | 2 | 0 |" in out and "table1: 6 runs to do" in out
    assert not (tmp_path / "r").exists()
