"""CCIL: BackTrack labels solve s~ + f(s~, a) = s, filtering keeps only what it should, and the
method trains end to end."""

import pytest
import torch

from bmil.cli import main
from bmil.errors import BMILError
from bmil.methods.ccil import CCILSettings, corrective_labels, lipschitz_penalty, solve_predecessor
from test_fit import _config

A = torch.tensor([[0.1, 0.05], [-0.02, 0.08]])  # a known linear state change f(s, a) = A s + B a
B = torch.tensor([[0.2, 0.0], [0.0, 0.1]])


def linear(s, a):
    return s @ A.T + a @ B.T


def test_backtrack_solves_the_predecessor_of_a_known_linear_system():
    target, action = torch.randn(50, 2), torch.rand(50, 2) * 2 - 1
    s, residual = solve_predecessor(linear, target, action, iterations=30)
    assert (residual <= 1e-5).all()
    assert torch.allclose(s + linear(s, action), target, atol=1e-5)
    exact = torch.linalg.solve(torch.eye(2) + A, (target - action @ B.T).T).T  # (I + A) s = t - B a
    assert torch.allclose(s, exact, atol=1e-5)


def _transitions(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs, action = torch.randn(n, 2, generator=g), torch.rand(n, 2, generator=g) * 2 - 1
    return obs, action, obs + linear(obs, action)


def test_labels_lead_back_onto_the_demonstration():
    obs, action, next_obs = _transitions()
    cfg = CCILSettings(noisy_labels=3, action_noise=0.05, max_distance=100.0)
    label_obs, label_action, counts = corrective_labels(linear, obs, action, next_obs, cfg, torch.Generator().manual_seed(0))
    assert counts == {"fits": 40, "backtrack": 40, "noisy_action": 120}
    back = label_obs[:40]
    assert torch.allclose(back + linear(back, label_action[:40]), obs, atol=1e-5)  # (s~, a) reaches s
    noisy = label_obs[40:]
    assert torch.allclose(noisy + linear(noisy, label_action[40:]), next_obs.repeat(3, 1), atol=1e-5)
    assert label_action.abs().max() <= 1


def test_filtering_drops_transitions_the_model_misses_and_far_labels():
    obs, action, next_obs = _transitions()
    next_obs[:10] += 5.0  # the model misses these ten transitions by far
    cfg = CCILSettings(noisy_labels=1, action_noise=0.0, max_distance=100.0)
    _, _, counts = corrective_labels(linear, obs, action, next_obs, cfg, torch.Generator().manual_seed(0))
    assert counts["fits"] == 30 and counts["backtrack"] == 30 and counts["noisy_action"] == 30
    # A tight distance bound drops the labels farther than it from their demo state.
    unit = (next_obs - obs).norm(dim=-1).mean()
    far = (solve_predecessor(linear, obs, action, 20)[0] - obs).norm(dim=-1) > 0.3 * unit
    tight = CCILSettings(noisy_labels=0, max_distance=0.3)
    _, _, counts = corrective_labels(linear, obs, action, next_obs, tight, torch.Generator().manual_seed(0))
    assert counts["backtrack"] == int((~far[10:]).sum())
    # An unconverged solve (one iteration, strict tolerance) is dropped too.
    rough = CCILSettings(noisy_labels=0, iterations=1, tolerance=1e-6, max_distance=100.0)
    assert corrective_labels(linear, obs, action, next_obs, rough, torch.Generator().manual_seed(0))[2]["backtrack"] == 0


def test_lipschitz_penalty_is_zero_within_the_bound_and_positive_beyond():
    z = torch.randn(64, 3)
    g = torch.Generator().manual_seed(0)
    assert lipschitz_penalty(lambda x: 2.0 * x, z, bound=2.5, eps=0.1, generator=g) == 0
    assert lipschitz_penalty(lambda x: 4.0 * x, z, bound=2.5, eps=0.1, generator=g) > 0


def test_bad_ccil_settings_are_refused():
    with pytest.raises(BMILError, match="model.ccil.demo_ratio"):
        CCILSettings(demo_ratio=2.0)
    with pytest.raises(BMILError, match="model.ccil.iterations"):
        CCILSettings(iterations=0)


def test_ccil_trains_end_to_end_and_resumes_with_the_same_labels(tmp_path, push_demos):
    ccil = {"model_steps": 20, "model_batch_size": 32}
    main(["fit", "--config", str(_config(tmp_path, push_demos, method="CCIL", ccil=ccil))])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2 and any(k.startswith("dynamics.") for k in ckpt["state_dict"])
    # A resumed run remakes its labels from the saved model: the same ones.
    from bmil.methods import CCIL

    module = CCIL.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    module.setup("fit")
    module.start_epoch()
    module.make_labels()
    first = module.labels
    module.make_labels()
    assert len(first[0]) > 0 and torch.equal(first[0], module.labels[0]) and torch.equal(first[1], module.labels[1])
