"""Point mazes: geometry, start and goal placement, success regions, per-cell counting, expert."""

import tempfile

import numpy as np
import pytest
import torch

from bmil.domains import get_domain
from bmil.domains.maze.env import ACTION_REPEAT
from bmil.domains.maze.layout import GOAL_RADIUS, WALL_MARGIN, make_layout
from bmil.evaluation import EvalResult, Evaluator, stratified_interval, wilson_interval

MAZES = ["point_umaze", "point_room5x11", "point_corridor7x7"]


def test_cell_to_coordinate_mapping_is_gymnasium_robotics():
    layout = make_layout("room5x11")  # 7 rows x 13 cols, 4-unit cells, centred on the origin
    assert np.allclose(layout.cell_centre([0, 0]), [-24.0, 12.0])  # x = (j + .5)s - 26, y = 14 - (i + .5)s
    assert np.allclose(layout.cell_centre([6, 12]), [24.0, -12.0])
    for maze in ("umaze", "room5x11", "corridor7x7"):
        layout = make_layout(maze)
        cells = np.argwhere(np.ones_like(layout.walls))
        centres = layout.cell_centre(cells)
        assert (layout.cell_of(centres) == cells).all()
        # A point just inside a cell's corner still maps to that cell.
        corner = centres + np.array([-0.49, 0.49]) * layout.scaling
        assert (layout.cell_of(corner) == cells).all()


@pytest.mark.parametrize(
    "maze, cells, scaling, goal_from_start",
    [  # the original's goal relative to its start (docs/original-code.md), y mirrored (rows go down here)
        ("umaze", 13, 8.0, (-2.0, -34.0)),  # the goal region's marker (-2, 34)
        ("room5x11", 51, 4.0, (40.0, 0.0)),
        ("corridor7x7", 41, 4.0, (24.0, -24.0)),
    ],
)
def test_maps_start_and_goal_match_the_original(maze, cells, scaling, goal_from_start):
    layout = make_layout(maze)
    assert len(layout.free_cells) == cells and layout.scaling == scaling
    start = layout.cell_centre(layout.start_cell)
    assert np.allclose(layout.goal_point - start, goal_from_start)


def test_umaze_goal_is_the_outer_quarter_of_its_cell():
    layout = make_layout("umaze")
    cx, cy = layout.cell_centre(layout.goal_cell)
    inside = [[cx - 0.01, cy - 0.01], [cx - 3.9, cy - 3.9], [cx, cy]]
    outside = [[cx + 0.01, cy - 2], [cx - 2, cy + 0.01], [cx + 3, cy + 3], [cx + 8, cy]]
    assert layout.success(np.array(inside)).all()
    assert not layout.success(np.array(outside)).any()


def test_point_goals_succeed_within_radius_0_6():
    for maze in ("room5x11", "corridor7x7"):
        layout = make_layout(maze)
        centre = layout.cell_centre(layout.goal_cell)
        assert layout.success(centre + [GOAL_RADIUS - 0.01, 0])
        assert layout.success(centre + [0, -(GOAL_RADIUS - 0.01)])
        assert not layout.success(centre + [GOAL_RADIUS + 0.01, 0])
        assert not layout.success(centre + [0.45, 0.45])  # 0.636 away


def test_reset_places_the_ball_and_episodes_end_on_success():
    domain = get_domain("point_room5x11")
    env = domain.make_env()
    start = domain.training_starts(4, seed=3)
    assert (start[:, :2] == domain.layout.start_cell).all()
    assert np.abs(start[:, 2:] - domain.layout.cell_centre(domain.layout.start_cell)).max() <= 0.1
    obs, info = env.reset(seed=1, options={"start": start[0]})
    assert obs.shape == (4,) and obs.dtype == np.float32
    assert np.allclose(obs[:2], start[0, 2:], atol=1e-6) and not info["is_success"]
    assert 0 < np.abs(obs[2:]).max() < 0.5  # velocity noise 0.1 * N(0, 1)
    # Place the ball 0.3 from the goal point and push towards it: success ends the episode.
    goal = domain.layout.goal_point
    obs, info = env.reset(seed=1, options={"start": [3, 11, goal[0] - 0.8, goal[1]]})
    assert not info["is_success"]
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0]))
        if terminated:
            break
    assert terminated and info["is_success"] and reward == 1.0
    assert np.linalg.norm(obs[:2] - goal) <= GOAL_RADIUS


def test_the_ball_moves_about_0_2_per_step_like_the_original():
    domain = get_domain("point_room5x11")
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": [3, 1, -20.0, 0.0]})
    xs = [obs[0]]
    for _ in range(30):
        obs, *_ = env.step(np.array([1.0, 0.0]))
        xs.append(obs[0])
    moves = np.diff(xs)
    # 4 x 0.01 s at the 5 units/s cap (+0.23 units/s the force adds within each physics step).
    assert moves.max() <= 0.21 and moves[-5:].min() > 0.2
    assert ACTION_REPEAT == 4


def test_inlined_step_matches_gymnasium_robotics_point_env_bit_for_bit():
    domain = get_domain("point_corridor7x7")
    env, reference = domain.make_env(), domain.make_env()
    start = domain.robustness_starts(5, seed=2)[3]
    rng = np.random.default_rng(0)
    actions = np.repeat(rng.uniform(-1.5, 1.5, (20, 2)), 30, axis=0)  # long pushes into and along walls
    env.reset(seed=4, options={"start": start})
    reference.reset(seed=4, options={"start": start})
    for action in actions:
        obs, *_ = env.step(action)
        for _ in range(ACTION_REPEAT):
            reference.point.step(np.clip(action, -1, 1))
        expected = np.concatenate([reference.point.data.qpos, reference.point.data.qvel])
        assert np.array_equal(obs, expected.astype(np.float32))


def test_time_feature_is_an_option():
    domain = get_domain("point_umaze_time")
    env = domain.make_env()
    obs, _ = env.reset(seed=0, options={"start": domain.training_starts(1, 0)[0]})
    assert domain.obs_dim == 5 and obs.shape == (5,) and obs[4] == 0
    for _ in range(3):
        obs, *_ = env.step(np.zeros(2))
    assert obs[4] == pytest.approx(0.003)


def test_no_temporary_files_are_left(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in MAZES:
        get_domain(name).make_env().close()
    assert list(tmp_path.iterdir()) == []


def test_robustness_starts_cover_every_cell_equally_inside_its_box():
    domain = get_domain("point_corridor7x7")
    layout = domain.layout
    starts = domain.robustness_starts(3 * 41 + 5, seed=7)
    assert np.array_equal(starts, domain.robustness_starts(3 * 41 + 5, seed=7))
    groups = domain.start_groups(starts)
    counts = np.bincount(groups, minlength=41)
    assert counts.min() == 3 and counts.max() == 4 and counts.sum() == len(starts)
    for row, group in zip(starts, groups):
        cell = row[:2].astype(int)
        assert layout.cell_ids[tuple(cell)] == group and not layout.walls[tuple(cell)]
        low, high = layout.start_box(cell)
        assert (low <= row[2:]).all() and (row[2:] <= high).all()
        assert (layout.cell_of(row[2:]) == cell).all()
    # The start cell (1, 1) has walls on its left and top (row 0): the box keeps 1.0 away from both.
    low, high = layout.start_box(np.array([1, 1]))
    centre = layout.cell_centre([1, 1])
    assert np.allclose(low, centre + [-2 + WALL_MARGIN, -2]) and np.allclose(high, centre + [2, 2 - WALL_MARGIN])


def test_per_cell_rate_is_the_unweighted_mean_over_cells():
    # Cell 0: 1/1, cell 1: 1/3, cell 2: 0/2 -> mean of rates 4/9, not the pooled 2/6.
    groups = np.array([0, 1, 1, 1, 2, 2])
    success = np.array([1, 1, 0, 0, 0, 0], bool)
    result = EvalResult("m", np.zeros((6, 4)), success, np.ones(6, int), groups=groups, num_groups=4)
    s, n = result.group_counts()
    assert s.tolist() == [1, 1, 0, 0] and n.tolist() == [1, 3, 2, 0]
    assert np.isnan(result.group_rates()[3])
    assert result.rate == pytest.approx(4 / 9)
    assert "mean over 3 cells (1-3 episodes each, 6 in all)" in result.summary()
    record = result.to_dict()
    assert record["group_successes"] == [1, 1, 0, 0] and record["group_episodes"] == [1, 3, 2, 0]


def test_stratified_interval_arithmetic():
    z = 1.96
    lo, hi = stratified_interval([10, 0], [10, 20])
    n1, n2 = 10 + z * z, 20 + z * z
    p1, p2 = (10 + z * z / 2) / n1, (z * z / 2) / n2
    half = z * np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) / 2
    assert lo == pytest.approx(max(0, 0.5 - half)) and hi == pytest.approx(min(1, 0.5 + half))
    # Equal counts: close to Wilson's interval of the pooled count (the same mean).
    lo, hi = stratified_interval([50, 70, 90], [100, 100, 100])
    wlo, whi = wilson_interval(210, 300)
    assert abs(lo - wlo) < 0.01 and abs(hi - whi) < 0.01
    assert stratified_interval([0, 0], [0, 0]) == (0.0, 1.0)


class _Towards:
    """Pushes every ball in the +x direction (a deterministic toy policy)."""

    def __call__(self, obs):
        return torch.tensor([[1.0, 0.0]]).repeat(len(obs), 1)


def test_evaluator_counts_exactly_one_episode_per_start_and_ends_at_the_goal():
    domain = get_domain("point_room5x11")
    starts = domain.robustness_starts(2 * 51, seed=0)
    result = Evaluator(domain, workers=0, batch_size=32).evaluate(_Towards(), starts, seed=0)
    assert result.episodes == 102 and result.num_groups == 51
    assert (result.group_counts()[1] == 2).all()
    ends = result.steps[result.success]
    assert result.success.any() and (ends < domain.horizon).all()  # terminated at the goal
    assert (result.steps[~result.success] == domain.horizon).all()
    # Starting in the goal: success at reset, no step taken.
    goal = domain.layout.goal_point
    at_goal = np.array([[3, 11, goal[0], goal[1]]])
    result = Evaluator(domain, workers=0).evaluate(_Towards(), at_goal, seed=0)
    assert result.success.all() and result.steps.tolist() == [0]


def test_text_grid_shows_every_cell():
    domain = get_domain("point_umaze")
    starts = domain.robustness_starts(13, 0)
    success = domain.start_groups(starts) % 2 == 0
    result = EvalResult.of(domain, starts, success, np.ones(13, int))
    grid = domain.describe(result)
    lines = grid.splitlines()
    assert len(lines) == 2 + 7  # legend, column numbers, 7 rows
    rows = {int(line.split()[0]): line for line in lines[2:]}
    assert grid.count("###") == 1 + 35 - 13 and grid.count("100") == 7
    assert "S" in rows[1].split()[2] and "G" in rows[5].split()[2]  # cells (1,1) and (5,1)


@pytest.mark.slow
def test_planning_expert_reaches_the_goal_from_every_cell():
    for name in MAZES:
        domain = get_domain(name)
        starts = domain.robustness_starts(3 * domain.num_groups, seed=1)
        result = Evaluator(domain, workers=0, batch_size=64).evaluate(domain.make_expert(1), starts, seed=1)
        assert result.group_rates().min() == 1.0, name


@pytest.mark.slow
def test_fit_on_a_maze_evaluates_per_cell(tmp_path, capsys, monkeypatch):
    from bmil.cli import main

    domain_type = type(get_domain("point_umaze"))
    drawn, figure = [], domain_type.robustness_figure  # record the demos each figure is given
    monkeypatch.setattr(domain_type, "robustness_figure",
                        lambda self, result, demos=None: drawn.append(demos) or figure(self, result, demos))
    demos = tmp_path / "demos"
    main(["demos", "--env", "point_umaze", "--num", "2", "--seed", "0", "--out", str(demos)])
    main(["fit", "--config", "conf/point_umaze.yaml", "--config", "conf/overlays/maze_quick.yaml",
          "--model.demos.path", str(demos), "--model.demos.num", "2", "--model.policy.batch_size", "32",
          "--model.policy.steps_per_epoch", "5", "--model.model.training", "steps", "--model.model.steps", "3",
          "--trainer.max_epochs", "2", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--training_success.every_n_epochs", "0",
          "--robustness.every_n_epochs", "0", "--robustness.final_episodes", "13", "--robustness.workers", "0"])
    out = capsys.readouterr().out
    assert "mean over 13 cells (1 episodes each, 13 in all)" in out
    assert "per-cell success %" in out and out.count("###") >= 22
    run = next((tmp_path / "runs" / "point_umaze_bmil").iterdir())
    record = __import__("json").loads((run / "robustness_final.json").read_text())
    assert record["episodes"] == 13 and record["group_episodes"] == [1] * 13
    assert (run / "robustness" / "final.png").is_file()
    assert len(drawn) == 1 and drawn[0]["episode"].unique().tolist() == [0, 1]  # the fit's 2 demos
    png = tmp_path / "expert.png"
    main(["evaluate", "--model.env", "point_umaze", "--policy", "expert", "--episodes", "13",
          "--training_episodes", "1", "--workers", "0", "--plot", str(png), "--plot_demos", str(demos)])
    assert png.stat().st_size > 1000 and drawn[1]["episode"].unique().tolist() == [0, 1]
