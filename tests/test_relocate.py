"""Adroit Relocate: the paper's fixed ball and target, start noise on the right joints, the success
threshold, the scripted expert and a tiny fit."""

import json

import numpy as np
import pytest
import torch

from bmil.domains import get_domain
from bmil.domains.adroit.env import OBJECT_POS, TARGET_POS
from bmil.domains.adroit.figure import palm_starts
from bmil.evaluation import EvalResult, Evaluator


def test_ball_and_target_are_fixed_after_every_reset():
    domain = get_domain("relocate")
    env = domain.make_env()
    for seed in range(5):  # gymnasium-robotics' own reset draws new positions from the seed
        obs, info = env.reset(seed=seed, options={"start": domain.robustness_starts(5, seed)[seed]})
        _, ball, target = env.positions()
        assert np.allclose(ball, OBJECT_POS) and np.allclose(target, TARGET_POS)
        assert obs.shape == (39,) and obs.dtype == np.float32 and not info["is_success"]
        assert np.allclose(obs[36:39], np.subtract(OBJECT_POS, TARGET_POS), atol=1e-6)


def test_start_noise_moves_the_hand_joints_only():
    domain, original = get_domain("relocate"), get_domain("relocate_object_noise")
    assert (domain.training_starts(3, 0) == 0).all()
    starts = domain.robustness_starts(500, seed=1)
    assert np.abs(starts[:, :30]).max() <= 0.1 and np.abs(starts[:, :30]).max() > 0.099
    assert (starts[:, 30:] == 0).all()  # the ball's 6 joints untouched (the paper's words)
    assert np.abs(original.robustness_starts(500, seed=1)[:, 30:]).max() > 0.099  # the original's code
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": starts[7]})
    assert np.allclose(obs[:30], starts[7, :30], atol=1e-6) and np.allclose(env.data.qvel, 0)
    assert np.array_equal(domain.robustness_starts(4, 3), domain.robustness_starts(4, 3))


def test_success_is_the_ball_within_0_1_of_the_target_and_ends_the_episode():
    domain = get_domain("relocate")
    env = domain.make_env()
    env.reset(seed=0, options={"start": np.zeros(36)})
    target = np.array(TARGET_POS)
    for offset, expected in ((0.099, True), (0.101, False)):
        # Put the ball just inside / outside the radius and step with the hand at rest.
        start = np.zeros(36)
        start[30:33] = target - np.array(OBJECT_POS) + [offset, 0, 0]
        env.reset(seed=0, options={"start": start})
        _, ball, _ = env.positions()
        assert np.linalg.norm(ball - target) == pytest.approx(offset, abs=1e-9)
        assert env._info()["is_success"] == expected


def test_palm_start_picture_uses_the_start_pose():
    domain = get_domain("relocate")
    starts = domain.robustness_starts(20, 0)
    palms = palm_starts(domain.model, starts)
    env = domain.make_env()
    env.reset(seed=0, options={"start": starts[3]})
    assert np.allclose(palms[3], env.positions()[0])
    result = EvalResult.of(domain, starts, np.arange(20) % 2 == 0, np.ones(20, int))
    assert domain.robustness_figure(result) is not None


def test_expert_is_seeded_per_episode():
    domain = get_domain("relocate")
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": np.zeros(36)})
    batch = torch.as_tensor(np.stack([obs, obs]))
    actions = []
    for seed in (1, 1, 2):
        expert = domain.make_expert(0)
        expert.reset(2, seed)
        actions.append(expert(batch))
    assert torch.equal(actions[0], actions[1]) and not torch.equal(actions[0], actions[2])
    assert actions[0].abs().max() <= 1


@pytest.mark.slow
def test_expert_relocates_the_ball_from_training_and_perturbed_starts():
    domain = get_domain("relocate")
    evaluator = Evaluator(domain, workers=0, batch_size=16)
    result = evaluator.run(domain.make_expert(0), "training", 4, seed=0)
    assert result.success.all() and (result.steps < 150).all()
    result = evaluator.run(domain.make_expert(0), "robustness", 48, seed=0)
    assert result.success.mean() >= 0.9  # 97.7% of 1,000 starts (docs/domains.md)
    assert (result.steps[result.success] < 150).all()


@pytest.mark.slow
def test_tiny_fit_on_relocate(tmp_path, capsys):
    from bmil.cli import main

    demos = tmp_path / "demos"
    main(["demos", "--env", "relocate", "--num", "2", "--seed", "0", "--out", str(demos)])
    main(["fit", "--config", "conf/relocate.yaml", "--config", "conf/overlays/relocate_quick.yaml",
          "--model.demos.path", str(demos), "--model.demos.num", "2", "--model.policy.steps_per_epoch", "5",
          "--model.model.training", "steps", "--model.model.steps", "3", "--trainer.max_epochs", "2",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--training_success.every_n_epochs", "0",
          "--validation.every_n_epochs", "0", "--robustness.final_episodes", "8", "--robustness.workers", "0"])
    out = capsys.readouterr().out
    assert "final robustness" in out and "relocate: success" in out
    run = next((tmp_path / "runs" / "relocate_bmil").iterdir())
    assert json.loads((run / "robustness_final.json").read_text())["episodes"] == 8
    assert (run / "robustness" / "final.png").is_file()
