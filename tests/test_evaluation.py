import gymnasium as gym
import numpy as np
import pytest
import torch

from bmil.domains import get_domain
from bmil.errors import BMILError
from bmil.evaluation import EvalResult, Evaluator, RandomPolicy, run_episodes, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)


class ShortEpisodes(gym.Env):
    """Terminates after ``start[0]`` steps; succeeds iff ``start[1]`` > 0 (at termination only)."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        self.length, self.goal = int(options["start"][0]), bool(options["start"][1])
        self.t = 0
        return np.zeros(1, np.float32), {"is_success": False}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return np.zeros(1, np.float32), 0.0, done, False, {"is_success": done and self.goal}


class CountingPolicy:
    """Zero actions; counts how many observation rows it was asked to act on."""

    def __init__(self, act_dim: int = 1):
        self.act_dim, self.rows = act_dim, 0

    def __call__(self, obs):
        self.rows += len(obs)
        return torch.zeros(len(obs), self.act_dim)


def test_run_episodes_counts_short_episodes_exactly():
    starts = np.array([[1, 1], [5, 0], [3, 1], [10, 1]])
    policy = CountingPolicy()
    envs = [ShortEpisodes() for _ in starts]
    rollout = run_episodes(envs, policy, starts, [0] * 4, horizon=8)
    success, steps = rollout.success, rollout.steps
    np.testing.assert_array_equal(steps, [1, 5, 3, 8])  # the 10-step one is cut at the horizon
    np.testing.assert_array_equal(success, [True, False, True, False])
    assert [env.t for env in envs] == [1, 5, 3, 8], "no env is stepped past its episode's end"
    assert policy.rows == 4 * 8, "one batched policy call per step while any episode runs"


def test_success_mode_final_versus_any():
    class Touch(ShortEpisodes):  # succeeds at step 1 only, never terminates
        def step(self, action):
            self.t += 1
            return np.zeros(1, np.float32), 0.0, False, False, {"is_success": self.t == 1}

    envs, starts = [Touch()], np.array([[9, 0]])
    final = run_episodes(envs, CountingPolicy(), starts, [0], 5, "final").success
    anywhere = run_episodes(envs, CountingPolicy(), starts, [0], 5, "any").success
    assert not final[0] and anywhere[0]
    with pytest.raises(BMILError, match="success must be"):
        run_episodes(envs, CountingPolicy(), starts, [0], 5, "best")


def test_evaluator_runs_exactly_the_promised_fetch_episodes():
    domain = get_domain("push")
    policy = CountingPolicy(act_dim=4)
    result = Evaluator(domain, workers=0, batch_size=4).run(policy, "robustness", 10, seed=0)
    assert result.episodes == 10 and len(result.starts) == 10
    assert (result.steps == domain.horizon).all()
    assert policy.rows == 10 * domain.horizon


def test_policy_output_is_checked():
    domain = get_domain("push")
    with pytest.raises(BMILError, match="non-finite"):
        Evaluator(domain, workers=0).run(lambda o: torch.full((len(o), 4), float("nan")), "robustness", 2)
    with pytest.raises(BMILError, match="shape"):
        Evaluator(domain, workers=0).run(lambda o: torch.zeros(4), "robustness", 2)


def test_result_summary_and_figure():
    domain = get_domain("pickplace")
    starts = domain.robustness_starts(20, 0)
    success = np.arange(20) % 4 == 0
    result = EvalResult("pickplace", starts, success, np.full(20, 50))
    assert result.rate == 0.25 and result.to_dict()["successes"] == 5
    assert "25.0%" in result.summary()
    from bmil.plots import figure_to_array

    image = figure_to_array(domain.robustness_figure(result))
    assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0


@pytest.mark.slow
def test_worker_processes_give_identical_results():
    domain = get_domain("push")
    expert = domain.make_expert()
    starts = domain.robustness_starts(40, seed=3)
    inline = Evaluator(domain, workers=0, batch_size=8).evaluate(expert, starts, seed=3)
    with Evaluator(domain, workers=2, batch_size=8) as evaluator:
        sharded = evaluator.evaluate(expert, starts, seed=3)
    np.testing.assert_array_equal(inline.success, sharded.success)
    np.testing.assert_array_equal(inline.steps, sharded.steps)
    assert sharded.episodes == 40


def test_workers_import_glfw_without_a_probe_subprocess(monkeypatch):
    """glfw's library probe runs in a subprocess that prints a traceback if its worker is ended
    meanwhile (a Ctrl-C while workers start); workers must load the library directly instead."""
    import subprocess
    import sys

    import bmil.system

    monkeypatch.delenv("PYGLFW_LIBRARY", raising=False)
    assert "glfw.library" in sys.modules  # imported with the domains, as in every evaluating process
    bmil.system.load_glfw_directly()
    probe = ("import subprocess; started = []; subprocess.Popen.__init__ = lambda self, *a, **k: started.append(a)\n"
             "import glfw; print(len(started), glfw.library.glfw._name)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split()
    assert out == ["0", sys.modules["glfw.library"].glfw._name]


def test_random_policy_is_seeded():
    p = RandomPolicy(4)
    p.reset(2, 5)
    a = p(torch.zeros(2, 25))
    p.reset(2, 5)
    assert torch.equal(a, p(torch.zeros(2, 25)))


def test_the_maze_figure_draws_each_loaded_demonstration(tmp_path):
    from bmil.demos import generate_demos, load_demos

    domain = get_domain("point_umaze")
    generate_demos("point_umaze", num=2, seed=0, out=tmp_path / "d", progress=False)
    demos, _ = load_demos(tmp_path / "d", env="point_umaze")
    starts = domain.robustness_starts(13, seed=0)
    result = EvalResult.of(domain, starts, np.ones(13, bool), np.full(13, 10))
    plain = len(domain.robustness_figure(result).axes[0].lines)
    drawn = domain.robustness_figure(result, demos).axes[0].lines[plain:]
    assert len(drawn) == 2  # one path per demonstration, starting where the demo starts
    np.testing.assert_allclose(drawn[0].get_xydata()[0], demos["obs"][0, :2].numpy())
    import matplotlib.pyplot as plt

    plt.close("all")


class _ShiftedExpert(torch.nn.Module):
    """The maze expert as a network policy (its weight ``shift`` moves its actions) that counts the
    batches it starts and, like a killed run, is stopped when it starts batch ``stop_at``."""

    def __init__(self, expert, shift: float = 0.0, stop_at: int | None = None):
        super().__init__()
        self.expert, self.stop_at, self.batches = expert, stop_at, 0
        self.shift = torch.nn.Parameter(torch.tensor(shift))

    def reset(self, num_envs: int, seed: int) -> None:
        if self.batches == self.stop_at:
            raise KeyboardInterrupt
        self.batches += 1
        self.expert.reset(num_envs, seed)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.expert(obs) + self.shift


def test_an_evaluation_stopped_part_way_resumes_from_its_journal(tmp_path):
    domain = get_domain("point_umaze")
    starts = domain.robustness_starts(40, seed=2)  # 5 batches of 8
    evaluator = Evaluator(domain, workers=0, batch_size=8)
    whole = evaluator.evaluate(_ShiftedExpert(domain.make_expert()), starts, seed=2)
    assert len(set(whole.steps.tolist())) > 10  # episodes that differ, so a mixed-up batch would show
    journal = tmp_path / "final.journal"
    with pytest.raises(KeyboardInterrupt):
        evaluator.evaluate(_ShiftedExpert(domain.make_expert(), stop_at=3), starts, seed=2, journal=journal)
    assert len(journal.read_text().splitlines()) == 1 + 3  # its key, then the 3 finished batches
    with open(journal, "a") as f:
        f.write('{"batch": 3, "success": [tr')  # a line cut short by the kill

    policy = _ShiftedExpert(domain.make_expert())
    resumed = evaluator.evaluate(policy, starts, seed=2, journal=journal)
    assert policy.batches == 2  # only the batches the journal lacked ...
    np.testing.assert_array_equal(resumed.success, whole.success)  # ... and the outcomes of an unstopped run
    np.testing.assert_array_equal(resumed.steps, whole.steps)

    for other, starts_used in ((_ShiftedExpert(domain.make_expert(), shift=1e-3), starts),  # other weights
                               (_ShiftedExpert(domain.make_expert()), starts[::-1].copy())):  # other starts
        evaluator.evaluate(other, starts_used, seed=2, journal=journal)
        assert other.batches == 5  # another evaluation's journal is not used


def test_only_a_network_policy_keeps_a_journal(tmp_path):
    with pytest.raises(BMILError, match="journal"):
        Evaluator(get_domain("push"), workers=0).run(RandomPolicy(4), "robustness", 2, journal=tmp_path / "j")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_while_workers_start_is_delivered_once_they_are_launched(signame):
    import os
    import signal

    from bmil.system import signals_held

    def stop(signum, frame):
        raise KeyboardInterrupt

    signum = getattr(signal, signame)
    previous = signal.signal(signum, stop)
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signum)
                steps.append("launched")  # a raising handler would have cut this short
            steps.append("not reached")
    finally:
        signal.signal(signum, previous)
    assert steps == ["launched"]
    assert signal.getsignal(signal.SIGTERM) is not None and signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
