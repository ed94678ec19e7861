"""Robustness is measured from unseen starts (issue 65, case 3): robustness and validation starts
that are the training start's states, or one state repeated, and start settings that change
nothing are refused before anything trains, and every robustness evaluation checks its starts."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from bmil.cli import main
from bmil.domains import get_domain
from bmil.domains.starts import not_unseen
from bmil.errors import BMILError
from bmil.evaluation import Evaluator, RandomPolicy

PLANE = {"id": "start_envs:Plane-v0", "training": {"options": {"xy": [0.0, 0.0]}},
         "robustness": {"choices": [{"xy": [1.0, 0.0]}, {"xy": [0.0, 1.0]}, {"xy": [-1.0, 0.0]}]}}
IGNORING = {**PLANE, "id": "start_envs:IgnoresOptions-v0"}
HOPPER = {"id": "Hopper-v5", "success": "terminated"}


def test_the_statistic_tells_unseen_starts_from_the_training_start_and_from_one_repeated():
    rng = np.random.default_rng(0)
    training = rng.uniform(-0.01, 0.01, (64, 3))
    assert "none of the 64 starts differs" in not_unseen(training, rng.uniform(-0.01, 0.01, (64, 3)))
    one_other = rng.uniform(-0.01, 0.01, (64, 3)) + [1.0, 0.0, 0.0]
    assert "one start, repeated with that noise" in not_unseen(training, one_other)
    assert not_unseen(training, rng.uniform(-1.0, 1.0, (64, 3))) is None
    assert not_unseen(np.zeros((64, 3)), np.zeros((64, 3))) is not None  # a deterministic reset, every start the same
    assert not_unseen(np.zeros((64, 3)), np.zeros((15, 3))) is None  # too few to tell: the sample of 64 judges


def test_an_env_whose_reset_ignores_options_is_refused_naming_the_settings():
    domain = get_domain(IGNORING)
    with pytest.raises(BMILError) as refused:
        domain.check_start_settings()
    assert "model.env.robustness.choices (every choice gives the same start" in str(refused.value)
    with pytest.raises(BMILError) as refused:
        domain.check_unseen(domain.robustness_starts(64, 0), "the robustness starts")
    assert re.match(r"the robustness starts of start_envs:IgnoresOptions-v0 are not unseen: none of the 64 starts "
                    r"differs from the training start", str(refused.value))
    assert "Settings that change nothing: model.env.robustness.choices" in str(refused.value)
    assert "training.options" not in str(refused.value)  # they repeat the reset's own default: harmless
    good = get_domain(PLANE)
    good.check_start_settings()
    good.check_unseen(good.robustness_starts(64, 0), "the robustness starts")


def test_every_robustness_evaluation_checks_its_recorded_starts():
    with Evaluator(get_domain(IGNORING), 0) as evaluator:
        evaluator.run(RandomPolicy(2), "training", 4, 0)  # the training start may repeat
        with pytest.warns(UserWarning, match="the 20 robustness starts of this evaluation .seed 3. of .* are not unseen"):
            evaluator.run(RandomPolicy(2), "robustness", 20, 3)


def test_a_robustness_distribution_that_overlaps_the_training_start_is_judged_by_lists_long_enough():
    """Starts that include the training spot: a short list (here 5) can happen to repeat the spot and
    says nothing; the fit judges the distribution's sample and its long lists before it trains."""
    from bmil.preflight import check_robustness_starts

    overlapping = get_domain({**PLANE, "robustness": {"choices": [{"xy": [0.0, 0.0]}, {"xy": [1.0, 0.0]},
                                                                  {"xy": [0.0, 1.0]}]}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(40):
            check_robustness_starts(overlapping, "robustness", seed, [5, 200])
    with pytest.raises(BMILError, match=r"the 64 robustness starts \(seed 0\) of start_envs:IgnoresOptions-v0 are not unseen"):
        check_robustness_starts(get_domain(IGNORING), "robustness", 0, [5, 1000])


def test_warn_measures_anyway():
    domain = get_domain({**IGNORING, "starts_check": "warn"})
    with pytest.warns(UserWarning, match="not unseen"):
        domain.check_unseen(domain.robustness_starts(64, 0), "the robustness starts")
    with pytest.warns(UserWarning, match="change nothing"):
        domain.check_start_settings()


@pytest.mark.parametrize("robustness, named", [
    ({"qpos_noise": {0: 0.5}}, "model.env.robustness.qpos_noise (the same first observation as without the noise)"),
    ({"qpos_noise": {0: 0.5, 2: 0.1}}, None),  # qpos[2] is observed: the noise shows
])
def test_noise_that_the_observation_does_not_show_is_refused(robustness, named):
    domain = get_domain({**HOPPER, "robustness": robustness})  # Hopper's observation leaves out qpos[0]
    if named is None:
        domain.check_start_settings()
        return
    with pytest.raises(BMILError, match=re.escape(named)):
        domain.check_start_settings()


def test_a_perturb_hook_that_moves_nothing_is_refused():
    domain = get_domain({**PLANE, "robustness": {"perturb": "start_envs:moves_nothing"}})
    with pytest.raises(BMILError, match=re.escape("model.env.robustness.perturb (its 'start_envs:moves_nothing' leaves")):
        domain.check_start_settings()
    get_domain({**PLANE, "robustness": {"perturb": "start_envs:moves_away"}}).check_start_settings()


def _demos(path):
    obs = np.linspace([0.5, 0.5], [0.0, 0.0], 6)
    np.savez(path, obs=obs[:-1], actions=np.tile([[-0.5, -0.5]], (5, 1)).astype(np.float32) * 0.9,
             next_obs=obs[1:], episode=np.zeros(5, dtype=int))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("env, named", [
    (IGNORING, "model.env.robustness.choices"),
    ({**HOPPER, "robustness": {"qpos_noise": {0: 0.5}}}, "model.env.robustness.qpos_noise"),
])
def test_fit_and_check_refuse_them_before_any_work(tmp_path, env, named):
    config = {"trainer": {"max_epochs": 1}, "model": {"class_path": "bmil.methods.BC", "init_args": {
        "env": env, "demos": {"path": str(_demos(tmp_path / "d.npz")), "num": 1}}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    bmil = Path(sys.executable).with_name("bmil")
    for command in ("check", "fit"):
        done = subprocess.run([str(bmil), command, "--config", "run.yaml"], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
        err = done.stderr.strip().splitlines()
        assert done.returncode == 2 and "Traceback" not in done.stderr, err
        assert err[-1].startswith("bmil: error: ") and named in err[-1] and "not unseen" not in err[-2], err
    assert not (tmp_path / "runs").exists()


def test_starts_check_leaves_a_runs_signature_as_recorded():
    from bmil.runs.run import settings_hash

    before = {"model": {"init_args": {"env": dict(PLANE)}}, "trainer": {"max_epochs": 3}}
    now = {"model": {"init_args": {"env": {**PLANE, "starts_check": "refuse"}}}, "trainer": {"max_epochs": 3}}
    warned = {"model": {"init_args": {"env": {**PLANE, "starts_check": "warn"}}}, "trainer": {"max_epochs": 3}}
    assert settings_hash(before) == settings_hash(now) == settings_hash(warned)  # it changes nothing computed
