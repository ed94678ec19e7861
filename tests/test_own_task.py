"""A user's own task (issue 26): any gymnasium environment as a domain by its settings, and
demonstrations in the field's formats (Minari, robomimic HDF5, .npz), each bad input one message."""

import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from bmil.cli import main
from bmil.demo_formats import read_demos
from bmil.domains import get_domain
from bmil.errors import BMILError
from bmil.evaluation import Evaluator, RandomPolicy

from bmil.examples import pointmaze_demos  # the tutorial's demo writer

UMAZE = {"id": "PointMaze_UMaze-v3", "kwargs": {"continuing_task": False},
         "obs_keys": ["observation", "desired_goal"], "success_key": "success", "horizon": 300,
         "training": {"options": {"reset_cell": [3, 1], "goal_cell": [1, 1]}},
         "robustness": {"options": {"goal_cell": [1, 1]},
                        "choices": [{"reset_cell": [1, 3]}, {"reset_cell": [3, 3]}]}}


@pytest.fixture(scope="module")
def umaze():
    return get_domain(UMAZE)


@pytest.fixture(scope="module")
def controller_episodes():
    env = pointmaze_demos.make_env()
    return [pointmaze_demos.controller_episode(env, seed) for seed in range(3)]


def _arrays(record):
    obs = np.stack([np.concatenate([o["observation"], o["desired_goal"]]) for o in record["observations"]])
    return obs, np.stack(record["actions"])


def test_a_configured_env_reads_observation_success_and_starts(umaze):
    assert (umaze.name, umaze.obs_dim, umaze.act_dim, umaze.horizon) == ("PointMaze_UMaze-v3", 6, 2, 300)
    starts = umaze.robustness_starts(40, 0)
    assert np.array_equal(starts, umaze.robustness_starts(40, 0))  # seeded
    assert not np.array_equal(starts, umaze.robustness_starts(40, 1))
    env = umaze.make_env()
    first_x = [env.reset(options={"start": row})[0][0] for row in starts[:5]]
    assert np.allclose(first_x, starts[:5, -6])  # the row's first observation is the reset's
    # Choices cells (1,3) and (3,3) are at x = 1, the goal cell (1,1) at (-1, 1) (+-0.25 of reset noise).
    assert np.all(np.abs(starts[:, -6] - 1.0) <= 0.26) and np.all(np.abs(starts[:, -2:] - [-1.0, 1.0]) <= 0.26)
    train = umaze.training_starts(5, 0)
    assert np.all(np.abs(train[:, -6:-4] - [-1.0, -1.0]) <= 0.26)


@pytest.mark.slow
def test_success_ends_the_episode_and_workers_agree(umaze):
    env = umaze.make_env()
    env.reset(options={"start": umaze.training_starts(1, 0)[0]})
    goal = env.unwrapped.maze.cell_rowcol_to_xy(np.array([1, 1]))
    env.unwrapped.point_env.set_state(np.array([*goal, 0.0, 0.0])[:2], np.zeros(2))
    _, _, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert info["is_success"] and terminated
    results = []
    for workers in (0, 2):
        with Evaluator(umaze, workers) as evaluator:
            results.append(evaluator.run(RandomPolicy(2), "robustness", 24, 0).success)
    assert np.array_equal(*results)


@pytest.mark.parametrize("spec, message", [
    ({"id": "NoSuchEnv-v0"}, "NoSuchEnv-v0"),
    ({**UMAZE, "obs_keys": []}, "observes a dict (observation, achieved_goal, desired_goal)"),
    ({**UMAZE, "obs_keys": ["position"]}, "position not in"),
    ({**UMAZE, "robustness": {"qpos_noise": {0: 0.1}}}, "qpos_noise/qvel_noise need a MuJoCo env"),
    ({**UMAZE, "robustness": {"perturb": "no.such.module:fn"}}, "cannot import 'no.such.module:fn'"),
    ({"idd": "PointMaze_UMaze-v3"}, "unknown keys idd"),
    ({**UMAZE, "figure": [0, 6]}, "figure [0, 6]: two observation indices in 0..5"),
    ({"id": "Hopper-v5", "success": "terminated", "robustness": {"qpos_noise": {9: 0.1}}}, "indices [9] outside Hopper-v5's qpos (0..5)"),
])
def test_bad_env_settings_are_one_clear_message(spec, message):
    with pytest.raises(BMILError, match=re.escape(message)):
        get_domain(spec)


def test_an_unknown_name_points_to_env_settings():
    with pytest.raises(BMILError, match=r"Unknown environment 'PointMaze_UMaze-v3'.*model.env: \{id: PointMaze_UMaze-v3"):
        get_domain("PointMaze_UMaze-v3")


def test_noise_on_chosen_qpos_entries_of_a_mujoco_env():
    hopper = get_domain({"id": "Hopper-v5", "success": "terminated",
                         "robustness": {"qpos_noise": {2: 0.2}, "qvel_noise": {0: 0.5}}})
    plain = get_domain({"id": "Hopper-v5", "success": "terminated"})
    rows, base = hopper.robustness_starts(50, 0), plain.robustness_starts(50, 0)
    noise = rows[:, 3:5]
    assert np.all(np.abs(noise[:, 0]) <= 0.2) and np.all(np.abs(noise[:, 1]) <= 0.5) and noise.std(0).min() > 0.05
    # The observation is qpos[1:] then qvel: qpos[2] is obs[1], qvel[0] is obs[5]; the rest is the reset's.
    first, first_base = rows[:, -hopper.obs_dim:], base[:, -plain.obs_dim:]
    assert np.allclose(first[:, 1] - first_base[:, 1], noise[:, 0])
    assert np.allclose(first[:, 5] - first_base[:, 5], noise[:, 1])
    untouched = [i for i in range(hopper.obs_dim) if i not in (1, 5)]
    assert np.allclose(first[:, untouched], first_base[:, untouched])


def _npz(path, controller_episodes, **change):
    pairs = [_arrays(r) for r in controller_episodes]
    data = {"obs": np.concatenate([o[:-1] for o, _ in pairs]), "actions": np.concatenate([a for _, a in pairs]),
            "next_obs": np.concatenate([o[1:] for o, _ in pairs]),
            "episode": np.concatenate([np.full(len(a), i) for i, (_, a) in enumerate(pairs)])}
    data.update(change)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def test_npz_hdf5_and_minari_give_the_same_transitions(tmp_path, umaze, controller_episodes, monkeypatch):
    npz, _ = read_demos(_npz(tmp_path / "d.npz", controller_episodes), umaze, 3)
    ends = np.cumsum([len(r["actions"]) for r in controller_episodes])
    by_ends, _ = read_demos(_npz(tmp_path / "e.npz", controller_episodes, episode=None, episode_ends=ends), umaze, 3)
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        for i, record in enumerate(controller_episodes):
            obs, actions = _arrays(record)
            group = f.create_group(f"data/demo_{i}")
            group["obs/observation"] = np.stack([o["observation"] for o in record["observations"]])[:-1]
            group["obs/desired_goal"] = np.stack([o["desired_goal"] for o in record["observations"]])[:-1]
            group["next_obs/observation"] = np.stack([o["observation"] for o in record["observations"]])[1:]
            group["next_obs/desired_goal"] = np.stack([o["desired_goal"] for o in record["observations"]])[1:]
            group["actions"] = actions
    hdf5, _ = read_demos(tmp_path / "d.hdf5", umaze, 3)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    pointmaze_demos.write_minari("test/umaze-v0", 3)
    minari, meta = read_demos("minari:test/umaze-v0", umaze, 3)
    by_folder, _ = read_demos(tmp_path / "minari" / "test" / "umaze-v0", umaze, 3)
    assert meta["format"] == "minari" and meta["episodes"] == 3
    for td in (by_ends, hdf5, minari, by_folder):
        for key in npz.keys():
            assert torch.equal(td[key], npz[key]), key
    assert int(npz["done"].sum()) == 3 and npz["obs"].shape[1] == 6
    assert torch.equal(npz["next_obs"][:-1][~npz["done"][:-1]], npz["obs"][1:][~npz["done"][:-1]])


@pytest.mark.parametrize("change, message", [
    ({"episode": None}, "no episode boundaries: add 'episode'"),
    ({"actions": None}, "has no actions array"),
    ({"obs": "drop-goal"}, r"observations have shape \(\d+, 4\), but PointMaze_UMaze-v3 needs \(\d+, 6\)"),
    ({"actions": "nan"}, "actions contain NaN or inf"),
    ({"episode": "shuffled"}, "rows of an episode must be contiguous"),
])
def test_bad_npz_files_are_one_clear_message(tmp_path, umaze, controller_episodes, change, message):
    pairs = [_arrays(r) for r in controller_episodes]
    obs = np.concatenate([o[:-1] for o, _ in pairs])
    actions = np.concatenate([a for _, a in pairs])
    episode = np.concatenate([np.full(len(a), i) for i, (_, a) in enumerate(pairs)])
    value = {"drop-goal": obs[:, :4], "nan": np.where(np.arange(len(actions))[:, None] == 5, np.nan, actions),
             "shuffled": np.roll(episode, 7)}
    key, what = next(iter(change.items()))
    kwargs = {key: value[what] if isinstance(what, str) else what}
    if key == "obs":
        kwargs["next_obs"] = np.concatenate([o[1:] for o, _ in pairs])[:, :4]
    with pytest.raises(BMILError, match=message):
        read_demos(_npz(tmp_path / "bad.npz", controller_episodes, **kwargs), umaze, 3)


def test_missing_datasets_are_errors_naming_the_fix(tmp_path, umaze, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(BMILError, match="Minari dataset 'minari:nobody/none-v0' not found locally.*downloads nothing"):
        read_demos("minari:nobody/none-v0", umaze, 3)
    with pytest.raises(BMILError, match=r"'.*typo.npz' not found.*bmil demos --env"):
        read_demos(tmp_path / "typo.npz", umaze, 3)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(BMILError, match="no demonstration format bmil reads"):
        read_demos(tmp_path / "x.csv", umaze, 3)


def test_a_mistyped_demo_path_is_an_error_not_a_new_dataset(tmp_path, capsys):
    typo = tmp_path / "typo"
    cfg = ["fit", "--model", "bmil.methods.BC", "--model.env", "push", "--model.demos.path", str(typo),
           "--model.demos.num", "2", "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path),
           "--robustness.final_episodes", "0"]
    with pytest.raises(SystemExit):
        main(cfg)
    assert "not found" in capsys.readouterr().err and not typo.exists()



@pytest.mark.slow
@pytest.mark.parametrize("method", ["BMIL", "VINS"])
def test_an_exported_policy_acts_as_the_checkpoint_without_lightning(tmp_path, push_demos, method, capsys):
    import bmil
    from bmil.methods import BMIL, VINS
    from test_fit import _config

    init = {"vins": {"value_steps": 2, "model_steps": 2, "candidates": 16}} if method == "VINS" else {}
    main(["fit", "--config", str(_config(tmp_path, push_demos, method="VINS" if method == "VINS" else "BMIL", **init))])
    ckpt, out = tmp_path / "ckpt" / "last.ckpt", tmp_path / "export" / "policy.pt"
    main(["export", "--ckpt_path", str(ckpt), "--out", str(out)])
    assert f"exported {method} on push (after epoch 3)" in capsys.readouterr().out
    policy = bmil.load_policy(out)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["observation"]["dim"] == 25 and record["observation"]["layout"][0] == ["grip_pos", 3]
    assert record["action"] == {"dim": 4, "low": [-1.0] * 4, "high": [1.0] * 4}
    agent = {"BMIL": BMIL, "VINS": VINS}[method].load_from_checkpoint(ckpt, map_location="cpu").agent()
    obs = torch.randn(8, 25, generator=torch.Generator().manual_seed(0))  # any rows of the right width
    if method == "VINS":
        agent.reset(8, 5)
        policy.reset(5)
    with torch.no_grad():
        expected = agent(obs).numpy()
    assert np.array_equal(policy(obs.numpy()), expected)
    assert np.array_equal(policy(obs[0].numpy()).shape, (4,))
    with pytest.raises(BMILError, match=r"takes observations of 25 numbers"):
        policy(np.zeros(24))


def test_exported_policies_that_are_missing_or_corrupt_are_named(tmp_path):
    import bmil

    with pytest.raises(BMILError, match="not found; write one with: bmil export"):
        bmil.load_policy(tmp_path / "none.pt")
    (tmp_path / "p.pt").write_bytes(b"not a policy")
    with pytest.raises(BMILError, match="record .* is missing or corrupt"):
        bmil.load_policy(tmp_path / "p.pt")


def test_actions_are_rescaled_between_the_policy_and_an_envs_bounds(tmp_path):
    hopper = get_domain({"id": "Hopper-v5", "success": "terminated"})  # bounds [-1, 1]: unchanged
    assert not hopper.action_scale.rescales
    pusher = get_domain({"id": "Pusher-v5", "success": "terminated"})  # bounds [-2, 2]
    assert pusher.action_scale.rescales and np.allclose(pusher.action_scale.to_unit(np.full((1, 7), 2.0)), 1.0)
    env = pusher.make_env()
    env.reset(options={"start": pusher.training_starts(1, 0)[0]})
    sent = []
    env.env.step = lambda action: sent.append(action) or (None, 0.0, False, False, {})
    env.step(np.array([-1.0, -0.5, 0, 0.5, 1.0, 0, 0]))
    assert np.allclose(sent[0], [-2.0, -1.0, 0, 1.0, 2.0, 0, 0])
    actions = np.full((3, 7), 2.5)
    np.savez(tmp_path / "d.npz", obs=np.zeros((3, pusher.obs_dim)), actions=actions, episode=np.zeros(3))
    with pytest.raises(BMILError, match=r"action 2.5 .* outside Pusher-v5's action bounds \[-2, 2\]"):
        read_demos(tmp_path / "d.npz", pusher, 1)


@pytest.mark.slow
def test_the_tutorial_end_to_end(tmp_path, monkeypatch, capsys):
    """docs/your-own-task.md on a budget: Minari demos of PointMaze_UMaze-v3 (a task bmil does not
    ship), BMIL and BC fits with robustness, export, load and act as the checkpoint does."""
    import bmil
    from bmil.methods import BMIL

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    pointmaze_demos.write_minari("pointmaze/umaze-bmil-v0", 10)
    config = str(Path(__file__).resolve().parents[1] / "conf" / "examples" / "pointmaze_umaze.yaml")
    budget = ["--trainer.max_epochs", "3", "--model.policy.steps_per_epoch", "20", "--validation.every_n_epochs", "3",
              "--validation.episodes", "10", "--robustness.every_n_epochs", "0", "--robustness.final_episodes", "20",
              "--training_success.every_n_epochs", "0", "--validation.workers", "0", "--robustness.workers", "0",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    main(["fit", "--config", config, *budget, "--checkpoint.dirpath", str(tmp_path / "bmil")])
    main(["fit", "--config", config, "--config", "conf/bc.yaml", *budget, "--checkpoint.dirpath", str(tmp_path / "bc")])
    out = capsys.readouterr().out
    assert out.count("final robustness (the last policy): PointMaze_UMaze-v3: success") == 2 and "95% CI" in out
    ckpt = tmp_path / "bmil" / "best.ckpt"
    main(["evaluate", "--config", config, "--ckpt_path", str(ckpt), "--episodes", "20", "--workers", "0"])
    assert "[trained] robustness      PointMaze_UMaze-v3: success" in capsys.readouterr().out
    main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "policy.pt")])
    policy = bmil.load_policy(tmp_path / "policy.pt")
    assert policy.record["observation"]["layout"] == [["observation", 4], ["desired_goal", 2]]
    agent = BMIL.load_from_checkpoint(ckpt, map_location="cpu").agent()
    env = get_domain(policy.record["env"]).make_env()
    obs, _ = env.reset(options={"start": get_domain(policy.record["env"]).robustness_starts(1, 0)[0]})
    for _ in range(20):
        action = policy(obs)
        with torch.no_grad():
            assert np.array_equal(action, agent(torch.as_tensor(obs[None], dtype=torch.float32))[0].numpy())
        obs, *_ = env.step(action)


def test_videos_alternate_failures_and_successes():
    from bmil.evaluation import EvalResult
    from bmil.video import pick_episodes

    result = EvalResult("d", np.zeros((6, 2)), np.array([True, True, False, True, False, False]), np.zeros(6))
    assert pick_episodes(result, 4) == [2, 0, 4, 1]
    assert pick_episodes(result, 10) == [2, 0, 4, 1, 5, 3]


@pytest.mark.slow
def test_evaluate_renders_videos_of_the_episodes_it_measured(tmp_path):
    import subprocess

    import imageio.v3 as iio

    cmd = [sys.executable, "-m", "bmil.cli", "evaluate", "--model.env", "push", "--policy", "random",
           "--episodes", "6", "--training_episodes", "1", "--workers", "0", "--video", "2",
           "--video_dir", str(tmp_path / "videos"), "--json_out", str(tmp_path / "r.json"),
           "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          env={k: v for k, v in __import__("os").environ.items() if k != "MUJOCO_GL"})
    if "MuJoCo cannot render here" in done.stderr:
        pytest.skip("no offscreen OpenGL (EGL) on this machine")
    assert done.returncode == 0, done.stderr[-2000:]
    success = json.loads((tmp_path / "r.json").read_text())["success"]
    gifs = sorted((tmp_path / "videos").glob("*.gif"))
    assert len(gifs) == 2 and "2 videos in" in done.stdout
    for gif in gifs:  # each named by the start it replays and the outcome the evaluation measured
        index, outcome = int(gif.stem[5:10]), gif.stem.split("_")[1]
        assert outcome == ("success" if success[index] else "failure")
        frames = iio.imread(gif, index=None)
        assert frames.shape[1:3] == (240, 320) and frames.std() > 1.0  # rendered, not blank


def test_bmil_demos_written_as_minari_read_back_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    main(["demos", "--env", "push", "--num", "2", "--out", str(tmp_path / "d"), "--minari", "bmil/push-test-v0"])
    assert "and as Minari dataset bmil/push-test-v0" in capsys.readouterr().out
    from bmil.demos import load_demos

    ours, _ = load_demos(tmp_path / "d", "push")
    theirs, meta = read_demos("minari:bmil/push-test-v0", get_domain("push"), 2)
    assert meta["format"] == "minari"
    for key in ("obs", "action", "next_obs", "done", "episode", "step"):
        assert torch.equal(ours[key], theirs[key]), key


def test_workers_default_to_the_cores_the_process_may_use():
    import subprocess

    probe = "from bmil.system import usable_cores; print(usable_cores())"
    one = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", probe], capture_output=True, text=True)
    assert one.stdout.strip() == "1"


@pytest.mark.slow
def test_a_fit_can_end_with_videos_of_its_final_test(tmp_path, push_demos, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from test_fit import _config

    groups = {"robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0, "videos": 1}}
    try:
        main(["fit", "--config", str(_config(tmp_path, push_demos, method="BC", groups=groups))])
    except SystemExit:
        if "MuJoCo cannot render here" in capsys.readouterr().err:
            pytest.skip("no offscreen OpenGL (EGL) on this machine")
        raise
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "t" / "version_0"
    [gif] = (run / "videos" / "final").glob("start*.gif")
    assert "1 videos of the final test" in out
    tags = EventAccumulator(str(run)).Reload().Tags()["images"]
    assert f"eval/final_video/{gif.stem}" in tags


def test_a_domain_named_by_an_installed_entry_point_is_found(monkeypatch):
    from importlib.metadata import EntryPoint

    from bmil.domains import domain_names, registry

    point = EntryPoint("my_push", "bmil.domains.fetch.domain:push", "bmil.domains")
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [point] if group == "bmil.domains" else [])
    monkeypatch.setattr(registry, "_INSTANCES", {})
    assert "my_push" in domain_names() and get_domain("my_push").obs_dim == 25


def _lift_torso(env, rng):
    """A user's start function (model.env.robustness.perturb): the torso raised by U(0.1, 0.2)."""
    qpos = env.data.qpos.copy()
    qpos[1] += rng.uniform(0.1, 0.2)
    env.set_state(qpos, env.data.qvel.copy())
    return env._get_obs()


def test_a_users_start_function_moves_the_robustness_starts():
    plain = get_domain({"id": "Hopper-v5", "success": "terminated"})
    lifted = get_domain({"id": "Hopper-v5", "success": "terminated",
                         "robustness": {"perturb": "test_own_task:_lift_torso"}})
    rise = lifted.robustness_starts(20, 0)[:, -lifted.obs_dim] - plain.robustness_starts(20, 0)[:, -plain.obs_dim]
    assert np.all((rise >= 0.1) & (rise <= 0.2)) and rise.std() > 0.01  # obs[0] is the torso height, qpos[1]
    assert np.array_equal(lifted.training_starts(5, 0), plain.training_starts(5, 0))  # training starts untouched


def test_state_bounds_come_from_the_settings_or_a_finite_observation_space():
    assert get_domain(UMAZE).obs_bounds is None  # PointMaze's observation space is unbounded
    bounded = get_domain({**UMAZE, "state_bounds": [[-2, -2, -5, -5, -2, -2], [2, 2, 5, 5, 2, 2]]})
    assert np.array_equal(bounded.obs_bounds[1], [2, 2, 5, 5, 2, 2])
    pendulum = get_domain({"id": "Pendulum-v1", "success": "terminated"})
    assert np.array_equal(pendulum.obs_bounds[0], [-1, -1, -8]) and np.array_equal(pendulum.obs_bounds[1], [1, 1, 8])
    with pytest.raises(BMILError, match="state_bounds: \\[low, high\\], two lists of 6 numbers"):
        get_domain({**UMAZE, "state_bounds": [[0, 0], [1, 1]]})
    from bmil.methods import BMIL
    with pytest.raises(BMILError, match="give an environment's with model.env.state_bounds"):
        BMIL(env=UMAZE, traces={"bound_states": True})
    BMIL(env={**UMAZE, "state_bounds": [[-2] * 6, [2] * 6]}, traces={"bound_states": True})


@pytest.mark.parametrize("env, method, folder", [
    (None, None, "pickplace_bmil"), (None, "conf/bc.yaml", "pickplace_bc"),  # built-in domains: as before
    ('{"id": "PointMaze_UMaze-v3"}', None, "PointMaze_UMaze-v3_bmil"),  # a configured env: its id...
    ('{"id": "pkg.mod:Suite/task-v0", "name": "my_task"}', None, "my_task_bmil"),  # ...or its name
    ('{"id": "pkg.mod:Suite/task-v0"}', None, "pkg.mod_Suite_task-v0_bmil"),  # no ':' and no nested folder
    ("mypkg.tasks:my_task", None, "mypkg.tasks_my_task_bmil")])  # a domain factory's import path
def test_a_run_folder_is_named_by_the_env_as_one_safe_folder(env, method, folder, tmp_path):
    from bmil.demos import default_demo_path
    from bmil.lightning_cli import _default_run_name, _ParserOnly
    from bmil.runs.run import Run

    args = ["fit", "--config", "conf/pickplace.yaml", *(["--config", method] if method else []),
            *(["--model.env", env] if env else [])]
    config = _ParserOnly([]).parser.parse_args(args).fit
    _default_run_name(config)
    assert config.trainer.logger.init_args.name == folder
    # a tune's runs (named by the domain's name, a configured env's id) and the default demos cache, likewise
    assert Run("pkg.mod:Suite/task-v0", "BMIL trial 3", 100, ()).folder(tmp_path).path.parent.parent == tmp_path / "runs"
    assert Run("pkg.mod:Suite/task-v0", "BMIL trial 3", 100, ()).run_id == "pkg.mod_Suite_task-v0__BMIL_trial_3__s100"
    assert Run("push", "SC(30)", 0, ()).run_id == "push__SC_30__s0"
    assert default_demo_path("pkg.mod:Suite/task-v0", 10, 0) == Path("demos/pkg.mod_Suite_task-v0_n10_s0")
    assert default_demo_path("pickplace", 10, 0, True) == Path("demos/pickplace_n10_s0_first_success")


HOOK = '''
import os

import numpy as np


def lift(env, rng):
    """Raise Hopper's torso, and note the draw and the process that made it."""
    qpos = env.data.qpos.copy()
    qpos[1] += rng.uniform(0.1, 0.2)
    env.set_state(qpos, env.data.qvel.copy())
    with open(f"calls.{os.getpid()}", "a") as f:
        f.write(f"{qpos[1]!r}\\n")
    return env._get_obs()
'''


@pytest.mark.slow
def test_a_perturb_hook_beside_the_config_is_imported_by_the_workers_with_pythonpath(tmp_path):
    """The ``bmil`` command does not search the current folder: a hook module there is one error naming
    PYTHONPATH=.; with it, the spawned evaluation workers import it too and get the main process's draws."""
    import os
    import subprocess

    import yaml

    (tmp_path / "user_hooks.py").write_text(HOOK)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({"model": {"class_path": "bmil.methods.BMIL", "init_args": {
        "env": {"id": "Hopper-v5", "success": "terminated", "horizon": 20,
                "robustness": {"perturb": "user_hooks:lift"}}}}}))
    bmil = [str(Path(sys.executable).parent / "bmil"), "evaluate", "--config", "task.yaml", "--policy", "random",
            "--episodes", "48", "--training_episodes", "1", "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    refused = subprocess.run(bmil, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "bmil: error: model.env.robustness.perturb: cannot import 'user_hooks:lift'" in \
        refused.stderr and "user_hooks.py is in the current folder, which this command does not search: run it with " \
        "PYTHONPATH=. or install the module" in refused.stderr, refused.stderr
    # PYTHONPATH=. for the bmil command; python -m puts the folder on sys.path, which workers get
    for command, extra in ((bmil, {"PYTHONPATH": "."}), ([sys.executable, "-m", "bmil.cli", *bmil[1:]], {})):
        for f in tmp_path.glob("calls.*"):
            f.unlink()
        done = subprocess.run(command, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0 and "over 48 episodes" in done.stdout, done.stderr
        calls = sorted((f.read_text().split() for f in tmp_path.glob("calls.*")), key=len)
        *workers, drawn = calls  # the main process draws every start (and its start checks' samples)
        assert len(workers) == 2 and sum(map(len, workers)) == 48, calls  # 3 batches of 16, on 2 workers
        assert {d for draws in workers for d in draws} <= set(drawn)  # the same start, the same draw


def test_a_missing_module_in_the_current_folder_names_pythonpath(tmp_path, monkeypatch):
    from bmil.loading import import_object

    (tmp_path / "hooks_here.py").write_text("def f():\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    with pytest.raises(ImportError, match=r"hooks_here.py is in the current folder, which this command does not "
                                          r"search: run it with PYTHONPATH=\. or install the module"):
        import_object("hooks_here:f")
    with pytest.raises(ImportError) as error:
        import_object("no_such_module_here:f")
    assert str(error.value) == "No module named 'no_such_module_here'"
    (tmp_path / "envs_here.py").write_text("raise RuntimeError('imported')\n")  # an env id's module, likewise
    with pytest.raises(BMILError, match=r"model.env.id 'envs_here:Plane-v0': No module named 'envs_here'; envs_here.py "
                                        r"is in the current folder, which this command does not search"):
        get_domain({"id": "envs_here:Plane-v0"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_object("hooks_here:f")() == 1


@pytest.mark.parametrize("maze", ["medium", "large"])
def test_the_example_configs_start_where_their_demo_writer_starts(maze):
    """conf/examples/pointmaze_<maze>.yaml trains from the cell and toward the goal its demonstrations
    were written in, and the writer's controller reaches that goal from there."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "examples" / f"pointmaze_{maze}.yaml").read_text())
    env_settings = config["model"]["init_args"]["env"]
    env_id, steps, start, goal = pointmaze_demos.MAZES[maze]
    assert env_settings["id"] == env_id and env_settings["horizon"] >= steps
    assert env_settings["training"]["options"] == {"reset_cell": list(start), "goal_cell": list(goal)}
    assert env_settings["robustness"]["options"] == {"goal_cell": list(goal)}
    assert {"reset_cell": list(start)} not in env_settings["robustness"]["choices"]
    episode = pointmaze_demos.controller_episode(pointmaze_demos.make_env(maze), seed=0)
    assert episode["success"] and len(episode["actions"]) < steps
