"""bmil as a lab installs it: the built wheel in a fresh virtual environment, used from an empty
folder (the shipped configs found by name, nothing written into the package), and ``import bmil``
leaving the host process's numerics alone while the command and its workers pin theirs."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY_PICKPLACE

PINNED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
          "BMIL_NUMERICS")


def _unpinned_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in PINNED}


def _python(code: str, cwd: Path, python: str = sys.executable) -> dict:
    done = subprocess.run([python, "-c", code], cwd=cwd, env=_unpinned_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_bmil_leaves_the_host_process_alone(tmp_path):
    """A program that loads bmil (and its policy loader) keeps its thread count and variables."""
    seen = _python(
        "import json, os, torch\n"
        "before = torch.get_num_threads()\n"
        "import bmil, bmil.export\n"
        "bmil.load_policy\n"
        f"print(json.dumps({{'threads': [before, torch.get_num_threads()], "
        f"'set': [k for k in {PINNED!r} if k in os.environ]}}))", tmp_path)
    assert seen["set"] == []
    assert seen["threads"][0] == seen["threads"][1]
    assert seen["threads"][0] == torch_threads_unpinned(tmp_path)


def torch_threads_unpinned(folder: Path) -> int:
    """torch's thread count in a process that never imports bmil (what the host would have)."""
    return _python("import json, torch; print(json.dumps(torch.get_num_threads()))", folder)


HOST_SCRIPT = """
import json, os
import numpy as np
import torch  # the host loads torch first, as a program that evaluates a policy would
from bmil.evaluation.backends import ProcessBackend


def probe(starts, ids, offset=0):
    return [os.environ.get("MKL_CBWR"), torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()]


if __name__ == "__main__":
    backend = ProcessBackend(1)
    worker = backend.submit(probe, np.zeros((1, 2)), [[0]], 1)[0].result()
    backend.close()
    print(json.dumps({"worker": worker, "host": [os.environ.get("MKL_CBWR"), torch.backends.cpu.get_cpu_capability()]}))
"""


def test_evaluation_workers_pin_themselves_in_an_unpinned_host(tmp_path):
    """A host program (a script, which every spawned worker imports again, torch with it, before
    anything else runs) starts evaluation workers that compute as the command's: the pins in their
    environment before they load torch (AVX2 kernels also on an AVX-512 CPU, one thread), while the
    host's own environment and kernels stay as they were."""
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_unpinned_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["worker"] == ["AVX2", "AVX2", 1]
    assert seen["host"] == [None, torch_capability_unpinned(tmp_path)]


def torch_capability_unpinned(folder: Path) -> str:
    return _python("import json, torch; print(json.dumps(torch.backends.cpu.get_cpu_capability()))", folder)


@pytest.mark.slow
def test_the_wheel_works_from_an_empty_folder(tmp_path):
    """Build the wheel, install it into a new virtual environment outside the checkout (its
    dependencies: this environment's, through a path file, so nothing downloads), then from an empty
    folder run what a new user runs: the help, the shipped configs, the demo writer, a check and a
    two-epoch fit on a shipped config by name, an export, and bmil.load_policy."""
    source, wheels = _source_tree(tmp_path / "source"), tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=300)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bmil = venv / "bin" / "python", venv / "bin" / "bmil"
    site = Path(_python("import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))", tmp_path,
                        str(python)))
    (site / "checkout_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("bmil-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    package = site / "bmil"
    shipped_before = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert (package / "conf" / "pickplace.yaml").is_file() and not (package / "conf").is_symlink()

    user = tmp_path / "user"
    user.mkdir()
    (user / "tiny.yaml").write_text(yaml.safe_dump(TINY_PICKPLACE))

    def run(*args) -> str:
        done = subprocess.run([str(a) for a in args], cwd=user, env=_unpinned_env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
        return done.stdout

    assert "runs shipped: " in run(bmil, "--help") and "pickplace" in run(bmil, "--help")
    assert "examples/pointmaze_umaze" in run(bmil, "configs")
    assert "--maze {large,medium,umaze}" in run(python, "-m", "bmil.examples.pointmaze_demos", "--help")  # the tutorial's
    check = run(bmil, "check", "--config", "pickplace_quick", "--config", "tiny.yaml")
    assert "numerics: portable" in check and "runs/pickplace_quick/version_0 (new)" in check
    run(bmil, "fit", "--config", "pickplace_quick", "--config", "tiny.yaml")
    best = user / "runs/pickplace_quick/version_0/checkpoints/best.ckpt"
    assert best.is_file() and (user / "demos").is_dir()
    assert "exported BMIL on pickplace" in run(bmil, "export", "--ckpt_path", best, "--out", "policy.pt")
    loaded = _python("import json, os, bmil, torch\n"
                     "policy = bmil.load_policy('policy.pt')\n"
                     "print(json.dumps({'file': bmil.__file__, 'shape': list(policy(torch.zeros(1, 25)).shape), "
                     "'pinned': [k for k in ('OMP_NUM_THREADS', 'MKL_CBWR') if k in os.environ]}))", user, str(python))
    assert loaded == {"file": str(package / "__init__.py"), "shape": [1, 4], "pinned": []}
    shipped_after = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert shipped_after == shipped_before  # demos and runs went to the user's folder


def _source_tree(to: Path) -> Path:
    """The checkout's files as git sees them (tracked, or new and not ignored), copied: a build in the
    checkout itself would reuse its stale build/ folder, shipping files deleted since."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, to / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted, not yet staged
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return to
