import pytest
import torch
from tensordict import TensorDict

from bmil.models import BackwardsModel, ForwardModel, Policy
from bmil.traces import (BackwardTraces, ForwardTraces, TraceBuffer, TraceSettings, plan_draws, select_action,
                         trace_length)


def backward_traces(model, states, length, traces_per_state, strategy, coef, demo_action_std, generator,
                    every_step=False, clip_actions=True, state_bounds=None):
    settings = TraceSettings(per_state=traces_per_state, action_selection=strategy, selection_coef=coef,
                             selection_every_step=every_step, clip_actions=clip_actions)
    starts = states.repeat(traces_per_state, 1)
    return BackwardTraces(settings, demo_action_std, state_bounds).generate(
        model, None, starts, torch.full((len(starts),), length), generator)


def forward_traces(model, policy, states, length, traces_per_state, generator):
    source = ForwardTraces(TraceSettings(source="forward", per_state=traces_per_state), torch.ones(2), None)
    starts = states.repeat(traces_per_state, 1)
    return source.generate(model, policy, starts, torch.full((len(starts),), length), generator)


@pytest.mark.parametrize(
    "sizes, epochs, expected",
    [
        ((1, 3), (1, 200), {0: 1, 100: 1, 101: 2, 199: 2}),  # PickAndPlace: 3 is never reached
        ((1, 1), (1, 200), {0: 1, 199: 1}),  # Push
        ((1, 10), (100, 800), {177: 1, 178: 2, 256: 3, 723: 9, 799: 9}),  # Point mazes
    ],
)
def test_trace_length_schedule_matches_the_original(sizes, epochs, expected):
    assert {e: trace_length(e, sizes, epochs) for e in expected} == expected


def _model():
    torch.manual_seed(0)
    model = BackwardsModel(5, 2, hidden=32)
    model.fit_normalization(torch.randn(100, 5), torch.rand(100, 2) * 2 - 1, torch.randn(100, 5))
    return model


def test_backward_traces_shapes_and_chaining():
    states = torch.randn(7, 5)
    g = torch.Generator().manual_seed(0)
    td = backward_traces(_model(), states, length=3, traces_per_state=2, strategy="sc", coef=30.0,
                         demo_action_std=torch.ones(2), generator=g)
    assert td.batch_size == (3 * 7 * 2,)
    assert td["obs"].shape == (42, 5) and td["action"].shape == (42, 2)
    assert td["trace_step"].tolist() == [0] * 14 + [1] * 14 + [2] * 14
    torch.testing.assert_close(td["next_obs"][:14], states.repeat(2, 1))  # start at demo states
    torch.testing.assert_close(td["next_obs"][14:28], td["obs"][:14])  # step t+1 continues step t
    assert td["action"].abs().max() <= 1.0


def test_state_bounds_keep_every_imagined_state_inside():
    states = torch.zeros(50, 5)
    low, high = -0.05 * torch.ones(5), 0.05 * torch.ones(5)
    low[4], high[4] = -torch.inf, torch.inf  # an unbounded dimension stays free
    kwargs = dict(length=4, traces_per_state=1, strategy="sc", coef=30.0, demo_action_std=torch.ones(2))
    free = backward_traces(_model(), states, generator=torch.Generator().manual_seed(0), **kwargs)
    bounded = backward_traces(_model(), states, generator=torch.Generator().manual_seed(0),
                              state_bounds=(low, high), **kwargs)
    assert (free["obs"][:, :4].abs() > 0.05).any()  # without bounds the model walks outside
    assert (bounded["obs"][:, :4].abs() <= 0.05).all()
    assert (bounded["obs"][:, 4].abs() > 0.05).any()
    torch.testing.assert_close(bounded["next_obs"][50:], bounded["obs"][:150])  # chained on clamped states


def test_traces_are_reproducible_from_the_generator():
    model, states = _model(), torch.randn(4, 5)
    run = lambda seed: backward_traces(model, states, 2, 1, "none", 0.0, torch.ones(2),
                                       torch.Generator().manual_seed(seed))
    assert torch.equal(run(1)["obs"], run(1)["obs"])
    assert not torch.equal(run(1)["obs"], run(2)["obs"])


def test_action_selection_strategies():
    g = lambda: torch.Generator().manual_seed(0)
    mean, logvar = torch.zeros(20000, 2), torch.tensor([-6.0, 1.0]).expand(20000, 2)
    std = torch.exp(0.5 * logvar)
    sc = select_action(mean, std, logvar, "sc", 30.0, torch.ones(2), g())
    expected = 30 * 6 * torch.exp(torch.tensor(-6.0))  # c * (-logvar) * exp(logvar)
    assert sc[:, 0].std().item() == pytest.approx(expected.item(), rel=0.05)
    assert sc[:, 1].abs().max() < 1e-9  # logvar > 0 collapses to the mean
    rs = select_action(mean, torch.zeros_like(std), logvar, "rs", 0.5, torch.tensor([1.0, 2.0]), g())
    assert rs[:, 0].abs().max() <= 0.5 and rs[:, 1].abs().max() <= 1.0
    assert rs[:, 1].abs().max() > 0.95
    none = select_action(mean, std, logvar, "none", 30.0, torch.ones(2), g())
    assert none[:, 0].std().item() == pytest.approx(std[0, 0].item(), rel=0.05)


def test_perturbation_first_step_only_or_every_step():
    model, states = _model(), torch.randn(500, 5)
    kwargs = dict(length=2, traces_per_state=1, strategy="rs", coef=5.0, demo_action_std=torch.ones(2),
                  clip_actions=False)
    first = backward_traces(model, states, generator=torch.Generator().manual_seed(0), **kwargs)
    every = backward_traces(model, states, generator=torch.Generator().manual_seed(0), every_step=True, **kwargs)
    spread = lambda td, t: td["action"][td["trace_step"] == t].std().item()
    assert spread(every, 1) > 2 * spread(first, 1)


def test_forward_traces_use_the_policy_action():
    model, policy = ForwardModel(5, 2, hidden=32), Policy(5, 2, hidden=(16, 16))
    states = torch.randn(6, 5)
    td = forward_traces(model, policy, states, 2, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(td["action"][:6], policy(states))
    torch.testing.assert_close(td["obs"][6:], td["next_obs"][:6])


def test_trace_buffer_replace_sample_and_state():
    buffer = TraceBuffer(capacity=10)
    first = backward_traces(_model(), torch.randn(5, 5), 2, 1, "none", 0.0, torch.ones(2),
                            torch.Generator().manual_seed(0))
    buffer.add_epoch(first)
    buffer.add_epoch(first[:4])  # replaced, not appended
    assert len(buffer) == 4
    sample = buffer.sample(32, torch.Generator().manual_seed(0))
    assert sample["obs"].shape == (32, 5)
    restored = TraceBuffer(capacity=10)
    restored.load_state_dict(buffer.state_dict())
    again = restored.sample(32, torch.Generator().manual_seed(0))
    assert torch.equal(sample["obs"], again["obs"])
    with pytest.raises(ValueError, match="share of the buffer"):
        buffer.add_epoch(torch.cat([first, first]))


def test_trace_buffer_keeps_the_last_epochs_and_overwrites_the_oldest():
    buffer = TraceBuffer(capacity=30, epochs=3)
    epochs = [TensorDict({"obs": torch.full((10, 1), float(e)), "action": torch.zeros(10, 1),
                          "next_obs": torch.zeros(10, 1), "trace_step": torch.zeros(10, dtype=torch.int64)},
                         batch_size=[10]) for e in range(5)]
    for e, traces in enumerate(epochs):
        buffer.add_epoch(traces)
        assert len(buffer) == min(10 * (e + 1), 30)
    sample = buffer.sample(3000, torch.Generator().manual_seed(0))["obs"].flatten()
    assert set(sample.unique().tolist()) == {2.0, 3.0, 4.0}  # epochs 0 and 1 overwritten
    counts = torch.bincount(sample.long())[2:]
    assert counts.min() > 900  # uniform over what is kept
    with pytest.raises(ValueError, match="one epoch's share"):
        buffer.add_epoch(torch.cat([epochs[0], epochs[1]]))


class _Stepper:
    """A deterministic backwards model: the previous state is the next one minus 1, so a row's
    contents name its trace (the start) and its step."""

    def action_distribution(self, next_obs, variance_as_std):
        zeros = torch.zeros(len(next_obs), 2)
        return zeros, zeros, zeros

    def sample_previous(self, next_obs, action, generator, variance_as_std):
        return next_obs - 1


def test_planned_draws_get_the_rows_algorithm_1_would_draw_from_fewer_rolled():
    traces, length, draws = 50, 6, 120
    starts = 100.0 * torch.arange(traces, dtype=torch.float32).unsqueeze(1).repeat(1, 5)
    source = BackwardTraces(TraceSettings(action_selection="none"), torch.ones(2), None)
    every = source.generate(_Stepper(), None, starts, torch.full((traces,), length), torch.Generator())
    plan = plan_draws(traces, length, draws, torch.Generator().manual_seed(3))
    rolled = source.generate(_Stepper(), None, starts[plan.starts], plan.depths, torch.Generator())
    # Algorithm 1: every trace rolled in full, then uniform draws among all the rows.
    drawn = torch.randint(traces * length, (draws,), generator=torch.Generator().manual_seed(3))
    for key in ("obs", "action", "next_obs", "trace_step"):
        assert torch.equal(rolled[key][plan.rows], every[key][drawn]), key
    assert len(rolled) == int(plan.depths.sum()) < traces * length  # unused rows are not rolled
    assert plan.depths.tolist() == sorted(plan.depths.tolist(), reverse=True)
    deepest = {}
    for i in drawn.tolist():
        deepest[i % traces] = max(deepest.get(i % traces, 0), i // traces + 1)
    assert dict(zip(plan.starts.tolist(), plan.depths.tolist())) == deepest  # the traces hit, no deeper
