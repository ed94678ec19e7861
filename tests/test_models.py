import torch

from bmil.models import BackwardsModel, ForwardModel, Policy, make_policy
from bmil.models.mlp import GaussianMLP


def test_policy_shapes_bounds_and_losses():
    policy = Policy(25, 4)
    obs = torch.randn(8, 25) * 10
    action = policy(obs)
    assert action.shape == (8, 4) and action.abs().max() <= 1
    assert policy.loss(obs, action.detach()).item() < 1e-12
    gaussian = make_policy("gaussian", 25, 4)
    assert gaussian(obs).shape == (8, 4)
    assert torch.isfinite(gaussian.loss(obs, torch.zeros(8, 4)))


def test_policy_architecture_is_3x256():
    linear = [m for m in Policy(25, 4).modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(25, 256), (256, 256), (256, 256), (256, 4)]


def test_logvar_is_bounded_on_both_sides():
    net = GaussianMLP(3, 2)
    with torch.no_grad():
        net.logvar_head.bias.fill_(1e4)
        _, high = net(torch.randn(5, 3))
        net.logvar_head.bias.fill_(-1e4)
        _, low = net(torch.randn(5, 3))
    assert (high <= net.max_logvar + 1e-4).all() and (low >= net.min_logvar - 1e-4).all()


def test_forward_model_matches_backwards_parameter_count():
    count = lambda m: sum(p.numel() for p in m.parameters())
    b, f = count(BackwardsModel(25, 4)), count(ForwardModel(25, 4))
    assert abs(f - b) / b < 0.02


def _linear_system(n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.9, 0.2, 0.0], [-0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])
    B = torch.tensor([[0.5, 0.0], [0.0, 0.4], [0.3, -0.2]])
    s = torch.randn(n, 3, generator=g)
    a = torch.tanh(torch.randn(n, 2, generator=g))
    s_next = s @ A.T + a @ B.T + 0.01 * torch.randn(n, 3, generator=g)
    return s, a, s_next


def test_backwards_model_learns_a_linear_system():
    torch.manual_seed(0)
    s, a, s_next = _linear_system()
    model = BackwardsModel(3, 2, hidden=64)
    model.fit_normalization(s, a, s_next)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(s, a, s_next).item()
    for step in range(600):
        idx = torch.randint(len(s), (256,))
        loss = model.loss(s[idx], a[idx], s_next[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.loss(s, a, s_next).item() < first - 1.0
    # B_S's mean recovers the true previous state s = A^-1 (s' - B a) on fresh data.
    s2, a2, n2 = _linear_system(256, seed=1)
    with torch.no_grad():
        mean, std, _ = model.state_net.mean_std(torch.cat([n2, a2], -1))
        predicted = n2 + mean
    rmse = (predicted - s2).pow(2).mean().sqrt().item()
    assert rmse < 0.1, rmse  # states have unit scale; a constant guess would be ~1.0
    assert (std < 0.3).all()
