import json
import os
import shutil

import numpy as np
import pytest
import torch

from bmil.demos import META_FILE, generate_demos, load_demos, save_demos
from bmil.errors import BMILError


def test_demo_dataset_contents(push_demos):
    td, meta = load_demos(push_demos, env="push")
    n = meta["transitions"]
    assert meta["episodes"] == 2 and meta["env"] == "push" and meta["expert"] == "PushExpert"
    assert td["obs"].shape == (n, 25) and td["action"].shape == (n, 4)
    assert td["done"].sum() == 2 and td["done"][-1]
    assert set(td["episode"].tolist()) == {0, 1}
    # transitions chain within an episode: next_obs of step t is obs of step t+1
    same_ep = td["episode"][1:] == td["episode"][:-1]
    torch.testing.assert_close(td["next_obs"][:-1][same_ep], td["obs"][1:][same_ep])
    assert td["action"].abs().max() <= 1.0
    assert {"torch", "mujoco", "gymnasium-robotics"} <= set(meta["versions"])


def test_demos_are_seeded_and_differ(tmp_path, push_demos):
    again = generate_demos("push", 2, seed=0, out=tmp_path / "a", progress=False)
    other = generate_demos("push", 2, seed=1, out=tmp_path / "b", progress=False)
    a, _ = load_demos(push_demos)
    b, _ = load_demos(again["path"])
    c, _ = load_demos(other["path"])
    assert torch.equal(a["action"], b["action"]) and torch.equal(a["obs"], b["obs"])
    assert not torch.equal(a["action"][:50], c["action"][:50])
    first, second = a["action"][a["episode"] == 0], a["action"][a["episode"] == 1]
    assert not torch.equal(first[: len(second)], second[: len(first)]), "demos differ"


def test_stop_on_success_ends_demos_early(tmp_path):
    meta = generate_demos("pickplace", 1, out=tmp_path / "d", stop_on_success=True, progress=False)
    assert meta["transitions"] < 50
    td, _ = load_demos(tmp_path / "d")
    assert td["done"][-1]


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_missing_dataset(tmp_path):
    with pytest.raises(BMILError, match="not found.*bmil demos --env push"):
        load_demos(tmp_path / "nope", env="push")


def test_wrong_env(push_demos):
    with pytest.raises(BMILError, match="for env 'push', but env 'pickplace'"):
        load_demos(push_demos, env="pickplace")


def test_truncated_file(push_demos, tmp_path):
    path = _copy(push_demos, tmp_path)
    target = path / "obs.memmap"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(BMILError, match="truncated"):
        load_demos(path)


def test_modified_values_fail_checksum(push_demos, tmp_path):
    path = _copy(push_demos, tmp_path)
    raw = bytearray((path / "action.memmap").read_bytes())
    raw[0] ^= 0xFF
    (path / "action.memmap").write_bytes(bytes(raw))
    with pytest.raises(BMILError, match="checksum"):
        load_demos(path)


def test_non_finite_values(push_demos, tmp_path):
    td, meta = load_demos(push_demos)
    td["obs"][3, 2] = float("nan")
    save_demos(td, meta, tmp_path / "nan")
    with pytest.raises(BMILError, match="'obs' contains NaN"):
        load_demos(tmp_path / "nan")


def test_wrong_dimension(push_demos, tmp_path):
    td, meta = load_demos(push_demos)
    td.set("obs", torch.zeros(td.batch_size[0], 7), inplace=False)
    td = td.exclude("obs").set("obs", torch.zeros(td.batch_size[0], 7))
    save_demos(td, meta, tmp_path / "dim")
    with pytest.raises(BMILError, match=r"'obs' is \(\d+, 7\).*expected \(\d+, 25\)"):
        load_demos(tmp_path / "dim")


def test_corrupt_metadata(push_demos, tmp_path):
    path = _copy(push_demos, tmp_path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(BMILError, match="metadata .* is corrupt"):
        load_demos(path)


def test_not_a_dataset_is_never_overwritten(push_demos, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    td, meta = load_demos(push_demos)
    with pytest.raises(BMILError, match="refusing to overwrite"):
        save_demos(td, meta, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(BMILError, match="not a bmil demonstration dataset"):
        load_demos(precious)


def test_failed_write_keeps_the_old_dataset(push_demos, tmp_path, monkeypatch):
    path = _copy(push_demos, tmp_path)
    td, meta = load_demos(path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("bmil.demos._checksums", crash)
    with pytest.raises(OSError, match="disk full"):
        save_demos(td, meta, path)
    monkeypatch.undo()
    again, _ = load_demos(path)
    assert torch.equal(again["obs"], td["obs"])
    assert [p.name for p in tmp_path.iterdir()] == ["copy"], "no temporary folder left behind"


def test_overwrite_replaces_a_dataset(push_demos, tmp_path):
    path = _copy(push_demos, tmp_path)
    generate_demos("push", 1, seed=3, out=path, progress=False)
    _, meta = load_demos(path)
    assert meta["episodes"] == 1 and meta["seed"] == 3
    assert json.loads((path / META_FILE).read_text())["checksums"]
    assert np.isclose(meta["expert_success_rate"], 1.0)


class _Payload:
    """Unpickling this runs a command: what a crafted dataset would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


def test_a_planted_pickle_is_never_run_and_is_named(push_demos, tmp_path):
    from tensordict import NonTensorData, TensorDict

    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted"
    TensorDict({"x": NonTensorData(_Payload(marker), batch_size=[1])}, batch_size=[1]).memmap(prefix=crafted)
    path = _copy(push_demos, tmp_path)
    shutil.copytree(crafted / "x", path / "x")  # the pickled entry, listed in tensordict's metadata
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "x": {"type": "NonTensorData"}}))
    with pytest.warns(FutureWarning):  # the live threat: tensordict's own loader runs it
        TensorDict.load_memmap(path)
    assert marker.is_file()
    marker.unlink()
    with pytest.raises(BMILError, match=r"holds x, which no bmil dataset has .* it is not loaded"):
        load_demos(path, env="push")
    assert not marker.exists()


def test_what_a_killed_writer_left_is_removed_by_the_next_write(push_demos, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that has ended
    left = [tmp_path / f".data.tmp-{dead}-abc", tmp_path / f".data.old-{dead}"]
    running = tmp_path / f".data.tmp-{os.getpid()}-xyz"  # a writer still alive: kept
    for folder in (*left, running):
        folder.mkdir()
        (folder / "obs.memmap").write_bytes(b"0" * 1000)
    td, meta = load_demos(push_demos)
    save_demos(td, meta, tmp_path / "data")
    assert not any(p.exists() for p in left) and running.exists()
    assert load_demos(tmp_path / "data")[0].batch_size == td.batch_size


def test_a_dataset_set_aside_by_a_killed_replace_is_put_back(push_demos, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    shutil.copytree(push_demos, tmp_path / f".data.old-{dead}")  # killed between its two renames
    td, _ = load_demos(tmp_path / "data")  # found again, not "not found"
    assert td.batch_size == load_demos(push_demos)[0].batch_size
    assert not (tmp_path / f".data.old-{dead}").exists()
