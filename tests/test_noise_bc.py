"""NoiseBC: its state noise has the asked-for statistics, and it trains end to end."""

import pytest
import torch

from bmil.cli import main
from bmil.errors import BMILError
from bmil.methods import NoiseBC
from test_fit import _config


def _module(push_demos, **noise) -> NoiseBC:
    module = NoiseBC(env="push", demos={"path": str(push_demos), "num": 2}, noise=noise)
    module.setup("fit")
    module.start_epoch()
    return module


def test_noise_is_scaled_by_each_dimensions_demo_std_and_spares_the_clean_rows(push_demos):
    module = _module(push_demos, scale=0.3, clean_fraction=0.25)
    obs = module.transitions["obs"]
    std = obs.std(0)
    row = obs[5].expand(20000, -1)
    noisy = module.perturb(row)
    changed = (noisy != row).any(1)
    assert abs(changed.float().mean().item() - 0.75) < 0.02  # 1 - clean_fraction of the rows
    assert torch.equal(noisy[~changed], row[~changed])  # clean rows are the demo rows exactly
    moving = std > 0
    measured = (noisy[changed] - row[changed]).std(0)
    assert torch.allclose(measured[moving], 0.3 * std[moving], rtol=0.05)
    assert (noisy[:, ~moving] == row[:, ~moving]).all()  # a constant dimension gets no noise
    assert abs((noisy[changed] - row[changed])[:, moving].mean().item()) < 0.01  # zero-mean


def test_noise_follows_the_epoch_generator(push_demos):
    a, b = _module(push_demos), _module(push_demos)
    obs = a.transitions["obs"][:64]
    assert torch.equal(a.perturb(obs), b.perturb(obs))
    assert not torch.equal(a.perturb(obs), obs)
    assert torch.equal(_module(push_demos, scale=0.0).perturb(obs), obs)


def test_bad_noise_settings_are_refused(push_demos):
    with pytest.raises(BMILError, match="model.noise.clean_fraction"):
        _module(push_demos, clean_fraction=1.5)
    with pytest.raises(BMILError, match="model.noise.scale"):
        _module(push_demos, scale=-0.1)


def test_noise_bc_trains_end_to_end(tmp_path, push_demos):
    main(["fit", "--config", str(_config(tmp_path, push_demos, method="NoiseBC", noise={"scale": 0.2}))])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["hyper_parameters"]["noise"] == {"scale": 0.2, "clean_fraction": 0.5}
