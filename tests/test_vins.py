"""VINS: the derived reward, the value loss, test-time selection and a tiny end-to-end fit."""

import torch
from torch import nn

from bmil.methods.vins import VINSSettings, derived_rewards, value_loss
from bmil.models.vins import DynamicsModel, ValueFunction, VINSAgent


def test_reward_is_derived_from_where_demos_end():
    done = torch.tensor([False, False, True, False, True])
    assert derived_rewards(done).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


class _Shift(nn.Module):
    def forward(self, obs, action):
        return obs + action


class _Closeness(nn.Module):
    """V(s) = -|s - (0.3, -0.2)|: the best next state is the one nearest that point."""

    def forward(self, obs):
        return -(obs - torch.tensor([0.3, -0.2])).norm(dim=-1)


class _Zero(nn.Module):
    def forward(self, obs):
        return torch.zeros(len(obs), 2)


def test_agent_acts_with_the_highest_value_candidate():
    agent = VINSAgent(_Zero(), _Shift(), _Closeness(), candidates=64, action_noise=0.5)
    agent.reset(num_envs=3, seed=0)
    obs = torch.zeros(3, 2)
    action = agent(obs)
    # Recompute the same candidates and check the chosen one scores best among them.
    g = torch.Generator().manual_seed(0)
    candidates = (0.5 * (2 * torch.rand((3, 64, 2), generator=g) - 1)).clamp(-1, 1)
    scores = _Closeness()(candidates)
    expected = candidates[torch.arange(3), scores.argmax(1)]
    torch.testing.assert_close(action, expected)
    assert (action - torch.tensor([0.3, -0.2])).norm(dim=-1).max() < 0.15  # near the best point


def test_scoring_in_passes_chooses_what_one_pass_chooses():
    """500 candidates: two observations per pass, so 5 observations take 3 passes (the last one
    short); each must keep its own candidates' scores."""
    torch.manual_seed(0)
    obs_dim, act_dim = 6, 3
    policy = nn.Sequential(nn.Linear(obs_dim, act_dim), nn.Tanh())
    dynamics, value = DynamicsModel(obs_dim, act_dim), ValueFunction(obs_dim)
    in_passes = VINSAgent(policy, dynamics, value, candidates=500, action_noise=0.5)
    one_pass = VINSAgent(policy, dynamics, value, candidates=500, action_noise=0.5)
    one_pass.obs_per_pass = 10**9
    assert in_passes.obs_per_pass == 2
    obs = torch.randn(5, obs_dim)
    for agent in (in_passes, one_pass):
        agent.reset(num_envs=5, seed=3)
    chosen = in_passes(obs)
    assert torch.equal(chosen, one_pass(obs))
    assert len(set(map(tuple, chosen.tolist()))) == 5  # distinct choices: no pass reused another's scores


def test_value_loss_penalises_perturbed_states_and_trains():
    torch.manual_seed(0)
    obs = torch.randn(64, 4)
    next_obs = obs + 0.1
    done = torch.zeros(64, dtype=torch.bool)
    done[::8] = True
    value, target = ValueFunction(4, hidden=32), ValueFunction(4, hidden=32)
    value.norm.fit(obs)
    target.load_state_dict(value.state_dict())
    settings = VINSSettings(perturb_dims=(0, 1), ns_penalty=0.5, interpolations=3)
    opt = torch.optim.Adam(value.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = value_loss(value, target, obs, next_obs, done, settings, value.norm.std, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.7 * losses[0]  # (the perturbation draws keep some noise)
    # States pushed off the data (in the perturbed dims) are valued below the data's own states.
    off = obs.clone()
    off[:, :2] += 2.0 * value.norm.std[:2]
    with torch.no_grad():
        assert value(off).mean() < value(obs).mean()


def test_dynamics_model_learns_a_linear_system():
    torch.manual_seed(0)
    obs, action = torch.randn(512, 3), torch.rand(512, 2) * 2 - 1
    next_obs = obs + 0.1 * torch.cat([action, action[:, :1]], -1)
    model = DynamicsModel(3, 2, hidden=64)
    model.fit_normalization(obs, action, next_obs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model.loss(obs, action, next_obs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        error = (model(obs, action) - next_obs).abs().mean()
    assert error < 0.01
