"""The Ray executor on a local multi-node cluster (``ray.cluster_utils.Cluster``: a head without
CPUs, worker nodes of one CPU each), started once for the module: a study's fits run as tasks with
no shared folder, a lost node's tasks resume elsewhere, Ctrl-C cancels them, every record equals
the local executor's, and a tune's trials report to the driver's storage."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # under pytest-xdist: one worker, one cluster

from bmil.studies.catalog import Run, Study  # noqa: E402
from bmil.studies.sweep import run_study  # noqa: E402

# Tiny fits that still checkpoint every epoch, validate and test: 12 epochs of 5 steps on 2 demos.
TINY = {"trainer": {"max_epochs": 12}, "training_success": {"every_n_epochs": 2, "episodes": 2},
        "validation": {"every_n_epochs": 1, "episodes": 5}, "robustness": {"every_n_epochs": 0, "final_episodes": 10},
        "model.init_args.demos.num": 2, "model.init_args.policy.steps_per_epoch": 5}
# What differs between two runs of one fit: its wall time, and whether it was resumed.
HISTORY = ("seconds", "resumed")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    import signal

    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init takes SIGTERM over and keeps it after shutdown
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, nodes
    ray.shutdown()
    c.shutdown()
    signal.signal(signal.SIGTERM, sigterm)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny fits' settings file, one for the module: its path is part of every run's record."""
    path = tmp_path_factory.mktemp("conf") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _study(tiny: Path, seeds: int) -> Study:
    extra = ("--config", str(tiny))
    return Study("table1", [Run("push", "BC", s, ("conf/push.yaml", "conf/bc.yaml"), extra=extra) for s in range(seeds)])


def _record(out: Path, run: Run) -> dict:
    record = json.loads((run.folder(out) / "result.json").read_text())
    return {k: v for k, v in record.items() if k not in HISTORY}


@pytest.fixture(scope="module")
def local_records(tiny, tmp_path_factory):
    """The tiny study's records as the local executor writes them (3 runs, seeds 0-2)."""
    folder = tmp_path_factory.mktemp("local")
    study = _study(tiny, 3)
    run_study(study, folder / "out", jobs=2, progress=lambda *_: None)
    return {run.run_id: _record(folder / "out", run) for run in study.runs}


def _checkpointed(out: Path) -> int:
    """Runs whose checkpoint came back to the driver and whose record did not yet."""
    return sum(not (p.parent.parent / "result.json").is_file() for p in out.glob("runs/*/version_0/checkpoints/last.ckpt"))


def _wait_for(condition, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.slow
def test_a_study_survives_a_lost_node_and_records_what_the_local_executor_records(cluster, local_records, tiny,
                                                                                tmp_path, monkeypatch):
    from bmil.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "PUSH_EVERY_S", 1.0)  # checkpoints come back while the fits run
    c, nodes = cluster
    study = _study(tiny, 3)  # one run a node
    out = tmp_path / "on_ray"
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(run_study(study, out, jobs=3, progress=lambda *_: None,
                                                                      executor="ray")))
    runner.start()
    _wait_for(lambda: _checkpointed(out) >= 3)
    c.remove_node(nodes[0], allow_graceful=False)  # a worker node lost mid-run, its run's checkpoint here
    finished_before = len(list(out.glob("runs/*/version_0/result.json")))
    runner.join(timeout=900)
    assert not runner.is_alive() and len(results) == 3 and not [r for r in results if r.get("failed")], results
    starts = {}
    for run in study.runs:
        assert _record(out, run) == local_records[run.run_id], run.run_id
        starts[run.run_id] = json.loads((run.folder(out) / "run.json").read_text())["starts"]
    # The lost node's runs ran once more elsewhere, one of them from the checkpoint that had come back.
    assert finished_before < 3 and max(len(s) for s in starts.values()) == 2, starts
    assert any(s[-1]["resumed_from"] is not None for s in starts.values() if len(s) == 2), starts
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/version_0/result.json")}
    again = run_study(study, out, jobs=3, progress=lambda *_: None, executor="ray")  # nothing runs twice
    assert len(again) == 0 and {p: p.stat().st_mtime_ns for p in finished} == finished


def _fits_running() -> list[str]:
    """The ``bmil fit`` processes Ray tasks started (each in a bmil-run-* folder of its node)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"bmil.cli\x00fit\x00" in command and b"/bmil-run-" in command:
            found.append(pid)
    return found


@pytest.mark.slow
def test_ctrl_c_on_the_driver_cancels_the_tasks_and_the_study_resumes(cluster, tmp_path, monkeypatch, ctrl_c_raises):
    from bmil.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "PUSH_EVERY_S", 1.0)
    longer = tmp_path / "tiny.yaml"  # fits long enough to be mid-run when a checkpoint has come back
    longer.write_text(yaml.safe_dump({**TINY, "trainer": {"max_epochs": 20}}))
    study = _study(longer, 2)
    out = tmp_path / "on_ray"
    ended = threading.Event()

    running: list[int] = []  # the fits seen running at Ctrl-C: what must be gone after it

    def ctrl_c() -> None:
        _wait_for(lambda: ended.is_set() or _checkpointed(out) >= 1)
        if not ended.is_set():
            running.append(len(_fits_running()))
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=ctrl_c)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_study(study, out, jobs=2, progress=lambda *_: None, executor="ray")
    finally:
        ended.set()
        timer.join()
    assert len(list(out.glob("runs/*/version_0/result.json"))) < 2 and running and running[0] >= 1, running
    # The cluster's CPUs are free again and no fit of the study is left running on its nodes.
    _wait_for(lambda: ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]
              and not _fits_running(), timeout=60)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"] and not _fits_running()
    results = run_study(study, out, jobs=2, progress=lambda *_: None, executor="ray")  # the rerun resumes
    assert results and not [r for r in results if r.get("failed")], results
    resumed = []
    for run in study.runs:
        assert (run.folder(out) / "result.json").is_file()
        starts = json.loads((run.folder(out) / "run.json").read_text())["starts"]
        resumed += [s["resumed_from"] for s in starts[1:] if s["resumed_from"]]
    assert resumed, "no run resumed from the checkpoint pushed before Ctrl-C"


@pytest.mark.slow
def test_an_evaluation_dealt_to_ray_tasks_gives_the_local_outcomes_start_for_start(cluster, tmp_path):
    from bmil.cli import main

    outcomes = {}
    for executor in ("local", "ray"):
        main(["evaluate", "--config", "conf/push.yaml", "--policy", "expert", "--episodes", "32", "--training_episodes", "1",
              "--executor", executor, "--workers", "2", "--json_out", str(tmp_path / f"{executor}.json")])
        outcomes[executor] = json.loads((tmp_path / f"{executor}.json").read_text())
    assert outcomes["ray"]["starts"] == outcomes["local"]["starts"]
    assert outcomes["ray"]["success"] == outcomes["local"]["success"]


@pytest.mark.slow
def test_a_fits_final_test_dealt_to_ray_tasks_gives_the_local_outcomes(cluster, tmp_path, monkeypatch):
    from bmil.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "trainer": {"max_epochs": 2}}))
    records = {}
    for executor in ("local", "ray"):
        main(["fit", "--config", str(Path(__file__).parents[1] / "conf/push.yaml"), "--config", "tiny.yaml",
              "--model", "bmil.methods.BC", "--trainer.logger.init_args.name", executor,
              "--robustness.executor", executor, "--validation.executor", executor, "--robustness.final_episodes", "32"])
        records[executor] = json.loads((tmp_path / "runs" / executor / "version_0" / "robustness_final.json").read_text())
    assert records["ray"]["success"] == records["local"]["success"] and len(records["ray"]["success"]) == 32


@pytest.mark.slow
def test_a_tunes_trials_on_ray_report_to_the_drivers_storage(cluster, user_folder, capsys):
    import optuna

    from bmil.cli import main
    from bmil.tuning.storage import JOURNAL, open_storage

    tiny = yaml.safe_load((user_folder / "tiny.yaml").read_text())
    (user_folder / "tiny.yaml").write_text(yaml.safe_dump({**tiny, "trainer": {"max_epochs": 2}}))
    main(["tune", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--methods", "bc", "--trials", "2",
          "--finalists", "0", "--final_seeds", "0", "--executor", "ray", "--out", "tune/t"])
    cpus = int(ray.cluster_resources()["CPU"])
    assert f"{cpus} fits at once" in capsys.readouterr().out  # no --jobs: the cluster's CPUs
    out = user_folder / "tune" / "t"
    trials = optuna.load_study(study_name="bc", storage=open_storage(out / JOURNAL)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:  # every validation check reached the journal on the driver, through its gRPC proxy
        folder = out / "runs" / f"pickplace__bc_trial_{t.number}__s100" / "version_0"
        storage = yaml.safe_load((folder / "config.yaml").read_text())["trial"]["storage"]
        checks = json.loads((folder / "validation.json").read_text())
        assert storage.startswith("grpc://") and sorted(t.intermediate_values) == [c["epoch"] for c in checks["history"]]


def test_a_runs_inputs_keep_its_settings_and_name_a_missing_dataset_on_the_driver(push_demos, tmp_path, monkeypatch):
    from bmil.errors import BMILError
    from bmil.executors.ray import run_inputs

    root = Path(__file__).parents[1]
    configs = (str(root / "conf/push.yaml"), str(root / "conf/bc.yaml"))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(push_demos, tmp_path / "mine" / "push")

    def inputs(path: str):
        return run_inputs(Run("push", "BC", 0, configs, extra=("--model.demos.num", "2", "--model.demos.path", path)).settings_yaml())

    config, path, name = inputs("mine/push")  # relative: the same name on the node, the same settings
    assert (path, name) == ((tmp_path / "mine" / "push").resolve(), "mine/push")
    assert yaml.safe_load(config)["model"]["init_args"]["demos"]["path"] == "mine/push" and "config" not in yaml.safe_load(config)
    config, path, name = inputs(str(tmp_path / "mine" / "push"))  # absolute: a folder of the node's
    assert name == "demo_input/push" and yaml.safe_load(config)["model"]["init_args"]["demos"]["path"] == name
    with pytest.raises(BMILError, match="model.demos.path elsewhere/push: not found on this machine"):
        inputs("elsewhere/push")


RAY_HOST = """
import json
from bmil.cluster import join_ray

ray = join_ray(None)  # a new local instance, from a process that never pinned


@ray.remote
def probe():
    import os
    import torch

    return [os.environ.get("MKL_CBWR"), torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()]


print(json.dumps({"worker": ray.get(probe.remote()), "host": __import__("os").environ.get("MKL_CBWR")}))
ray.shutdown()
"""


@pytest.mark.slow
def test_ray_workers_pin_for_their_own_cpu_before_torch_loads(tmp_path):
    """The Ray job bmil starts gives every worker the pins as it starts (its setup hook, for its own
    CPU), though the driver that joined was never pinned and the task imports torch first thing."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR",
                                                            "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "BMIL_NUMERICS",
                                                            "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", RAY_HOST], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"worker": ["AVX2", "AVX2", 1], "host": None}
