import numpy as np
import pytest

from bmil.domains import get_domain
from bmil.domains.fetch.env import GOAL_OFFSET, OBJECT_OFFSET, ROBUSTNESS_RANGE

MM = 1e-3


@pytest.fixture(scope="module", params=["push", "pickplace"])
def domain_env(request):
    domain = get_domain(request.param)
    env = domain.make_env()
    yield domain, env
    env.close()


def test_training_reset_geometry(domain_env):
    domain, env = domain_env
    obs, info = env.reset(options={"start": domain.training_starts(1, 0)[0]})
    assert obs.shape == (25,) and obs.dtype == np.float32
    grip0 = env.initial_gripper_xy
    assert np.abs(obs[:2] - grip0).max() < MM
    assert np.abs(obs[3:5] - (grip0 + OBJECT_OFFSET)).max() < MM
    assert np.abs(obs[6:9] - (obs[3:6] - obs[0:3])).max() < 1e-5  # object relative to gripper
    assert np.abs(env.goal[:2] - (grip0 + GOAL_OFFSET)).max() < MM
    table_z = env.unwrapped.height_offset
    expected_goal_z = table_z + (0.2 if domain.name == "pickplace" else 0.0)
    assert abs(env.goal[2] - expected_goal_z) < MM
    assert abs(obs[5] - table_z) < MM
    assert info["is_success"] is False


def test_training_reset_is_deterministic(domain_env):
    domain, env = domain_env
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2, options={"start": domain.training_starts(1, 0)[0]})
    np.testing.assert_array_equal(a, b)


def test_robustness_start_places_gripper(domain_env):
    domain, env = domain_env
    for start in domain.robustness_starts(6, seed=0):
        obs, _ = env.reset(options={"start": start})
        assert np.abs(obs[:2] - start).max() < MM, "gripper starts where asked"
        assert np.abs(obs[3:5] - env.object_xyz[:2]).max() < MM, "object stays fixed"
        np.testing.assert_allclose(env.unwrapped.goal, env.goal)


def test_success_is_object_within_5cm_of_goal(domain_env):
    _, env = domain_env
    import mujoco
    from gymnasium_robotics.utils import mujoco_utils

    env.reset()
    u = env.unwrapped
    for offset, expected in ((0.049, True), (0.051, False)):
        qpos = mujoco_utils.get_joint_qpos(u.model, u.data, "object0:joint").copy()
        qpos[:3] = env.goal + np.array([offset, 0.0, 0.0])
        mujoco_utils.set_joint_qpos(u.model, u.data, "object0:joint", qpos)
        mujoco.mj_forward(u.model, u.data)
        obs = u._get_obs()
        assert env._success(obs) is expected  # what reset reports
        assert bool(u._is_success(obs["achieved_goal"], u.goal)) is expected  # what step reports


def test_start_lists_are_seeded():
    domain = get_domain("pickplace")
    a, b = domain.robustness_starts(100, 7), domain.robustness_starts(100, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, domain.robustness_starts(100, 8))
    grip0 = domain.geometry["gripper_xy"]
    assert np.abs(a - grip0).max() <= ROBUSTNESS_RANGE
    assert np.abs(a - grip0).max() > 0.9 * ROBUSTNESS_RANGE  # actually spans the square
    np.testing.assert_array_equal(domain.training_starts(3, 0), np.tile(grip0, (3, 1)))


def test_unknown_environment_is_a_clear_error():
    from bmil.errors import BMILError

    with pytest.raises(BMILError, match="Unknown environment 'pikplace'.*Did you mean 'pickplace'"):
        get_domain("pikplace")
