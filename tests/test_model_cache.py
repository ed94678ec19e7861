"""A tune's trials share their dynamics models (issue 66): a fit that loads an epoch's backwards
model from the cache computes exactly what it would have trained, and trains none it finds."""

import hashlib
import json

import pytest
import torch

from bmil.cli import main

RUN = "runs/pickplace_quick/version_{}"


def _digest(folder) -> tuple:
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)
    weights = b"".join(t.numpy().tobytes() for _, t in sorted(checkpoint["state_dict"].items()))
    return (hashlib.sha256(weights).hexdigest(), repr(checkpoint["optimizer_states"]), checkpoint["global_step"],
            (folder / "validation.json").read_text(), json.loads((folder / "robustness_final.json").read_text())["success"])


@pytest.mark.slow
def test_a_fit_from_cached_models_is_the_fit_that_trains_them(user_folder, capsys):
    fit = ["fit", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--trainer.max_epochs", "3"]
    other = ["--model.init_args.policy.lr", "0.001", "--model.init_args.demo_ratio", "0.8"]  # what a tune varies
    cache = user_folder / "models"
    main([*fit, *other])  # version_0: no cache
    main([*fit, "--model_cache", str(cache)])  # version_1: other policy settings, fills the cache
    [folder] = cache.iterdir()
    entries = sorted(folder.glob("epoch_*.pt"))
    assert [p.name for p in entries] == ["epoch_00000.pt", "epoch_00001.pt", "epoch_00002.pt"]
    written = {p: p.stat().st_mtime_ns for p in entries}
    main([*fit, *other, "--model_cache", str(cache)])  # version_2: every model from the cache
    assert {p: p.stat().st_mtime_ns for p in entries} == written  # none trained again
    assert _digest(user_folder / RUN.format(2)) == _digest(user_folder / RUN.format(0))
    entries[1].write_bytes(b"cut short")  # an entry that cannot be read is trained again and rewritten
    main([*fit, *other, "--model_cache", str(cache)])  # version_3
    assert _digest(user_folder / RUN.format(3)) == _digest(user_folder / RUN.format(0))
    assert torch.load(entries[1], weights_only=True)["steps"] > 0
    assert "model_cache" not in (user_folder / RUN.format(2) / "config.yaml").read_text()


def test_a_tunes_local_fits_are_started_with_its_model_cache(tmp_path):
    from bmil.executors import make_executor
    from bmil.runs.launch import fit_command
    from bmil.runs.run import Run

    run = Run("pickplace", "bmil trial 0", 100, ("conf/pickplace_quick.yaml",))
    assert "--model_cache" not in fit_command(tmp_path, run)
    assert fit_command(tmp_path, run, 0, model_cache=tmp_path / "m")[-2:] == ["--model_cache", str(tmp_path / "m")]
    with make_executor("local", 1, die_with_driver=True, model_cache=tmp_path / "m") as executor:
        assert executor.fits.model_cache == tmp_path / "m"
