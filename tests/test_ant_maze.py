"""Ant mazes: the original's ant in the point mazes' maps, its starts and noise, the flip count,
the scripted expert and a fit with per-cell evaluation."""

import json
import tempfile

import mujoco
import numpy as np
import pytest
import torch

from bmil.domains import get_domain
from bmil.domains.maze import ant
from bmil.domains.maze.ant_expert import AntMazeExpert
from bmil.evaluation import Evaluator

MAZES = ["ant_umaze", "ant_room5x11", "ant_corridor7x7"]


def test_the_ant_is_the_originals_gear_10_with_0_15_s_steps():
    env = get_domain("ant_umaze").make_env()
    model = env.model
    assert model.opt.timestep == 0.03 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert (model.actuator_gear[:, 0] == 10).all() and model.nu == 8
    assert model.nq == 15 and model.nv == 14 and ant.STEP_SECONDS == pytest.approx(0.15)
    # One env step advances 5 physics steps.
    env.reset(seed=0, options={"start": [1, 1, 0.0, 0.0]})
    before = env.data.time
    env.step(np.zeros(8))
    assert env.data.time - before == pytest.approx(0.15)


@pytest.mark.parametrize("name", MAZES)
def test_walls_are_the_point_mazes_blocks(name):
    domain = get_domain(name)
    model, layout = domain.make_env().model, domain.layout
    blocks = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g): model.geom_pos[g]
              for g in range(model.ngeom) if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith("block_")}
    walls = np.argwhere(layout.walls)
    assert len(blocks) == len(walls)
    for i, j in walls:
        assert np.allclose(blocks[f"block_{i}_{j}"][:2], layout.cell_centre([i, j]))
    # Walls are solid: a torso pushed at one stops at its face.
    assert all(model.geom_contype[g] == 1 for g in range(model.ngeom)
               if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith("block_"))


def test_reset_places_the_torso_with_the_originals_noise_elsewhere():
    domain = get_domain("ant_room5x11")
    env = domain.make_env()
    starts = domain.training_starts(50, seed=3)
    assert (starts[:, :2] == domain.layout.start_cell).all()
    assert np.abs(starts[:, 2:] - domain.layout.cell_centre(domain.layout.start_cell)).max() <= 0.1
    rest = env.model.qpos0
    qpos, qvel = [], []
    for k, start in enumerate(starts):
        obs, info = env.reset(seed=k, options={"start": start})
        assert obs.shape == (29,) and obs.dtype == np.float32 and not info["is_success"] and not info["flipped"]
        assert np.allclose(obs[:2], start[2:], atol=1e-5)  # xy exactly the row's
        qpos.append(env.data.qpos.copy())
        qvel.append(obs[15:])
    qpos, qvel = np.array(qpos), np.array(qvel)
    assert np.allclose(np.linalg.norm(qpos[:, 3:7], axis=1), 1)  # a unit quaternion
    others = np.r_[2, 7:15]  # height and joints: rest + U(±0.1)
    deviation = qpos[:, others] - rest[others]
    assert np.abs(deviation).max() <= 0.1 and np.abs(deviation).max() > 0.08
    assert 0.07 < qvel.std() < 0.13  # 0.1 * N(0, 1) on all 14 velocities
    # The same seed gives the same state; another seed another.
    a, _ = env.reset(seed=7, options={"start": starts[0]})
    b, _ = env.reset(seed=7, options={"start": starts[0]})
    c, _ = env.reset(seed=8, options={"start": starts[0]})
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_episodes_end_at_the_goal_and_report_a_flipped_ant():
    domain = get_domain("ant_corridor7x7")
    env = domain.make_env()
    goal = domain.layout.goal_point
    _, info = env.reset(seed=0, options={"start": [7, 7, goal[0] + 0.3, goal[1]]})
    assert info["is_success"]
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert terminated and reward == 1.0 and not truncated
    env.reset(seed=0, options={"start": [1, 1, *domain.layout.cell_centre([1, 1])]})
    env.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # rolled over about x
    mujoco.mj_forward(env.model, env.data)
    _, _, terminated, _, info = env.step(np.zeros(8))
    assert info["flipped"] and not terminated  # no unhealthy termination, as the original


def test_time_feature_and_bounds():
    domain = get_domain("ant_umaze_time")
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": domain.training_starts(1, 0)[0]})
    assert domain.obs_dim == 30 and obs.shape == (30,) and obs[-1] == 0
    for _ in range(3):
        obs, *_ = env.step(np.zeros(8))
    assert obs[-1] == pytest.approx(0.003)
    low, high = domain.obs_bounds
    (x0, y0), (x1, y1) = domain.layout.xy_bounds
    assert np.allclose([low[0], low[1], high[0], high[1]], [x0, y0, x1, y1])
    assert np.isinf(low[2:29]).all() and np.isinf(high[2:29]).all()
    assert high[29] == pytest.approx(0.001 * domain.horizon)


def test_no_temporary_files_are_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    get_domain("ant_umaze").make_env().close()
    assert list(tmp_path.iterdir()) == []


def test_line_of_sight_waypoints():
    domain = get_domain("ant_umaze")  # 8-unit cells; the U opens at column 3
    layout = domain.layout
    expert = AntMazeExpert(layout, seed=0)
    expert.offset[:] = 0
    start = layout.cell_centre([1, 1])
    # From the start cell the wall between rows 1-2 and 3-4 hides everything past cell (2,3).
    target = expert.targets(start[None])[0]
    assert layout.cell_of(target).tolist() in ([1, 3], [2, 3])
    # In the goal cell the target is the goal region's centre.
    assert np.allclose(expert.targets(layout.cell_centre([5, 1])[None])[0], layout.goal_point)
    # A segment through a wall is never chosen: every target is visible from where the ant is.
    xy = domain.robustness_starts(13 * 5, seed=0)[:, 2:]
    targets = expert.targets(xy)
    for p, t in zip(xy, targets):
        path = p + np.linspace(0, 1, 50)[:, None] * (t - p)
        assert not layout.walls[tuple(layout.cell_of(path).T)].any()


def test_expert_actions_are_seeded_and_bounded():
    domain = get_domain("ant_room5x11")
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": domain.training_starts(1, 0)[0]})
    batch = torch.as_tensor(np.stack([obs, obs]))
    runs = []
    for seed in (1, 1, 2):
        expert = domain.make_expert(0)
        expert.reset(2, seed)
        runs.append(torch.stack([expert(batch) for _ in range(5)]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].abs().max() <= 1 and runs[0].shape == (5, 2, 8)


@pytest.mark.slow
def test_expert_reaches_the_goal_from_several_cells():
    for name, cells in (("ant_umaze", [(1, 1), (2, 3), (4, 2)]), ("ant_corridor7x7", [(1, 1), (4, 6), (7, 4)])):
        domain = get_domain(name)
        starts = domain.robustness_starts(4 * domain.num_groups, seed=2)
        keep = [k for k, s in enumerate(starts) if tuple(s[:2].astype(int)) in cells]
        result = Evaluator(domain, workers=0, batch_size=16).evaluate(domain.make_expert(2), starts[keep], seed=2)
        # The gait flips the ant in about 0.3% of episodes (docs/domains.md); the planner itself
        # never strands it: every failure is a flip.
        flipped = result.flags["flipped"]
        assert result.success.sum() >= len(keep) - 1 and (result.success | flipped).all(), (name, result.steps)
        assert (result.steps[result.success] < domain.horizon).all()


@pytest.mark.slow
def test_fit_on_an_ant_maze_evaluates_per_cell_and_counts_flips(tmp_path, capsys):
    from bmil.cli import main

    demos = tmp_path / "demos"
    main(["demos", "--env", "ant_umaze", "--num", "2", "--seed", "0", "--out", str(demos)])
    main(["fit", "--config", "conf/ant_umaze.yaml", "--config", "conf/overlays/ant_quick.yaml",
          "--model.demos.path", str(demos), "--model.demos.num", "2", "--model.policy.batch_size", "32",
          "--model.policy.steps_per_epoch", "5", "--model.model.training", "steps", "--model.model.steps", "3",
          "--trainer.max_epochs", "2", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--training_success.every_n_epochs", "0", "--validation.every_n_epochs", "0",
          "--robustness.final_episodes", "13", "--robustness.workers", "0"])
    out = capsys.readouterr().out
    assert "mean over 13 cells (1 episodes each, 13 in all)" in out and "flipped at the end:" in out
    assert "per-cell success %" in out
    run = next((tmp_path / "runs" / "ant_umaze_bmil").iterdir())
    record = json.loads((run / "robustness_final.json").read_text())
    assert record["episodes"] == 13 and record["group_episodes"] == [1] * 13
    assert 0 <= record["flags"]["flipped"] <= 13
    assert (run / "robustness" / "final.png").is_file()
