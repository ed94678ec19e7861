"""Imagined traces: batched rollouts of the backwards (or forward) model from every demo state.

One tensor computation per step covers every demo state and all K traces per state; nothing loops
over states. Traces live in a TorchRL replay buffer of TensorDicts (obs, action, next_obs,
trace_step) that is emptied and refilled every outer epoch (original-code-facts §2.4).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from bmil.models import BackwardsModel, ForwardModel

logging.getLogger("torchrl").setLevel(logging.WARNING)  # one INFO line per storage otherwise

ActionSelection = Literal["none", "sc", "rs"]


def trace_length(epoch: int, sizes: tuple[int, int], epochs: tuple[int, int]) -> int:
    """Linear schedule from sizes[0] at epochs[0] to sizes[1] at epochs[1], floored and clipped.

    Epochs count from 0, exactly as the original's ``threshold_linear_fn`` (original-code-facts
    §2.3): with epochs[1] = N the last size is never reached, e.g. PickAndPlace's (1, 3) over
    (1, 200) uses L = 1 until epoch 100 and L = 2 after.
    """
    (v0, v1), (e0, e1) = sizes, epochs
    frac = (epoch - e0) / max(e1 - e0, 1)
    return int(min(max(v0 + frac * (v1 - v0), min(v0, v1)), max(v0, v1)))


def select_action(
    mean: torch.Tensor,
    std: torch.Tensor,
    logvar: torch.Tensor,
    strategy: ActionSelection,
    coef: float,
    demo_action_std: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw the first (or every) trace action from B_A with the paper's perturbation strategies.

    - ``none``: a ~ N(mean, std).
    - ``sc`` (variance scaling SC(c)): the scale becomes c * (-logvar) * exp(logvar) per dimension,
      the original code's formula: peaked (low-entropy) dimensions get the largest multiplier, a
      dimension with logvar >= 0 collapses to its mean. The paper's c values assume this formula.
    - ``rs`` (resampling RS(b)): a ~ N(mean, std), then a' ~ U[a - b*sd_D, a + b*sd_D] with sd_D the
      per-dimension std of the demonstrated actions.
    """
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    if strategy == "sc":
        scale = (coef * -logvar * torch.exp(logvar)).clamp_min(1e-12)
        return mean + scale * noise
    action = mean + std * noise
    if strategy == "rs":
        uniform = torch.rand(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        action = action + (2 * uniform - 1) * coef * demo_action_std
    return action


@torch.no_grad()
def backward_traces(
    model: BackwardsModel,
    states: torch.Tensor,
    length: int,
    traces_per_state: int,
    strategy: ActionSelection,
    coef: float,
    demo_action_std: torch.Tensor,
    generator: torch.Generator,
    every_step: bool = False,
    clip_actions: bool = True,
    variance_as_std: bool = False,
    state_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TensorDict:
    """Roll B back ``length`` steps from every state (K times each): s' -> a ~ B_A -> s ~ B_S.

    The perturbation ``strategy`` applies to the first action, as the paper says, or to every step
    with ``every_step`` (what the original code did). ``state_bounds`` (low, high) clamps every
    imagined state into where states can be (the original's ``bounded_obs`` for mazes: a trace must
    not leave the maze). Returns length * N * K transitions.
    """
    next_obs = states.repeat(traces_per_state, 1)
    steps = []
    for t in range(length):
        mean, std, logvar = model.action_distribution(next_obs, variance_as_std)
        use = strategy if (t == 0 or every_step) else "none"
        action = select_action(mean, std, logvar, use, coef, demo_action_std, generator)
        if clip_actions:  # the policy is tanh-bounded; labels outside [-1, 1] are unreachable
            action = action.clamp(-1.0, 1.0)
        obs = model.sample_previous(next_obs, action, generator, variance_as_std)
        if state_bounds is not None:
            obs = torch.clamp(obs, *state_bounds)
        steps.append((obs, action, next_obs, t))
        next_obs = obs
    return _stack(steps)


@torch.no_grad()
def forward_traces(
    model: ForwardModel, policy, states: torch.Tensor, length: int, traces_per_state: int,
    generator: torch.Generator,
) -> TensorDict:
    """The ablation: roll the forward model ``length`` steps from every state with a = pi(s)."""
    obs = states.repeat(traces_per_state, 1)
    steps = []
    for t in range(length):
        action = policy(obs)
        next_obs = model.sample_next(obs, action, generator)
        steps.append((obs, action, next_obs, t))
        obs = next_obs
    return _stack(steps)


def _stack(steps) -> TensorDict:
    obs, action, next_obs, step = zip(*steps)
    n = obs[0].shape[0]
    return TensorDict(
        {
            "obs": torch.cat(obs),
            "action": torch.cat(action),
            "next_obs": torch.cat(next_obs),
            "trace_step": torch.cat([torch.full((n,), t, dtype=torch.int64) for t in step]),
        },
        batch_size=[n * len(steps)],
    )


class TraceBuffer:
    """The current epoch's traces in a TorchRL replay buffer, sampled uniformly with an explicit
    generator so that training is reproducible and resumes exactly.

    The buffer's storage holds the traces (and is what checkpoints save); ``sample`` reads a
    snapshot of its tensors taken when they are replaced, because going through the replay
    buffer's indexing costs ~0.3 ms per minibatch, a fifth of a whole policy step.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), batch_size=1)
        self._snapshot: dict[str, torch.Tensor] = {}

    def replace(self, traces: TensorDict) -> None:
        if len(traces) > self.capacity:
            raise ValueError(f"{len(traces)} traces exceed the buffer capacity {self.capacity}")
        self.buffer.empty()
        self.buffer.extend(traces)
        self._take_snapshot()

    def _take_snapshot(self) -> None:
        contents = self.buffer[: len(self.buffer)]
        self._snapshot = {key: contents[key] for key in ("obs", "action", "next_obs", "trace_step")}

    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        index = torch.randint(len(self.buffer), (n,), generator=generator)
        return {key: value[index] for key, value in self._snapshot.items()}

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state)
        if len(self.buffer):
            self._take_snapshot()
