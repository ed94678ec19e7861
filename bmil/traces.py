"""Imagined traces: batched rollouts of the backwards (or forward) model from the demo states.

One tensor computation per step covers every trace being rolled; nothing loops over states. Traces
live in a TorchRL replay buffer of TensorDicts (obs, action, next_obs, trace_step) that is emptied
and refilled every outer epoch (docs/original-code.md). Where an epoch's policy steps draw fewer
rows than the traces would hold, the draws are made first (``plan_draws``) and only the traces
they hit are rolled, each as deep as its deepest drawn row (docs/stability.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from bmil.errors import require
from bmil.models import BackwardsModel, ForwardModel

logging.getLogger("torchrl").setLevel(logging.WARNING)  # one INFO line per storage otherwise

ActionSelection = Literal["none", "sc", "rs"]


def trace_length(epoch: int, sizes: tuple[int, int], epochs: tuple[int, int]) -> int:
    """Linear schedule from sizes[0] at epochs[0] to sizes[1] at epochs[1], floored and clipped.

    Epochs count from 0, exactly as the original's ``threshold_linear_fn`` (docs/original-code.md):
    with epochs[1] = N the last size is never reached, e.g. PickAndPlace's (1, 3) over
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


@dataclass
class TraceSettings:
    """The imagined traces of every epoch.

    Args:
        source: backward (BMIL: the backwards model rolled back from every demo state) or forward
            (the paper's Table 2 ablation: a forward model rolled out under the current policy).
        per_state: K, traces started from every demo state per epoch.
        length: (first, last) trace length L of the linear schedule.
        length_epochs: Epochs (0-based) at which the schedule starts and ends.
        action_selection: Perturbation of the first trace action: none, sc (variance scaling
            SC(c)) or rs (uniform resampling RS(b)).
        selection_coef: c of SC(c) or b of RS(b).
        selection_every_step: Perturb every trace action (what the original code did), not only
            the first (what the paper says).
        clip_actions: Clip sampled trace actions to [-1, 1], the policy's range.
        bound_states: Clamp imagined states to the domain's state bounds (the mazes' free space
            and speed limit; the original's bounded_obs, on for mazes).
        demo_bounds_margin: Clamp imagined states to the box the demo states span, widened by
            this fraction of its size on every side (any domain; null: off, the paper).
        keep_epochs: The buffer holds the traces of this many epochs (at the longest trace
            length; the oldest are overwritten first). 1: refilled every epoch (the original).
        variance_as_std: Reproduce the original code's use of exp(logvar) as the sampling scale
            (docs/original-code.md).
    """

    source: Literal["backward", "forward"] = "backward"
    per_state: int = 1
    length: tuple[int, int] = (1, 1)
    length_epochs: tuple[int, int] = (1, 200)
    action_selection: ActionSelection = "sc"
    selection_coef: float = 30.0
    selection_every_step: bool = False
    clip_actions: bool = True
    bound_states: bool = False
    demo_bounds_margin: Optional[float] = None
    keep_epochs: int = 1
    variance_as_std: bool = False

    def __post_init__(self):
        require(self.per_state >= 1, "model.traces.per_state", self.per_state, "at least 1")
        require(self.keep_epochs >= 1, "model.traces.keep_epochs", self.keep_epochs, "at least 1")
        require(self.demo_bounds_margin is None or self.demo_bounds_margin >= 0, "model.traces.demo_bounds_margin",
                self.demo_bounds_margin, "null (off) or 0 or more")
        require(len(self.length) == 2 and min(self.length) >= 1, "model.traces.length", list(self.length),
                "[first, last], each at least 1")
        require(len(self.length_epochs) == 2 and 0 <= self.length_epochs[0] <= self.length_epochs[1],
                "model.traces.length_epochs", list(self.length_epochs), "[start, end] with 0 <= start <= end")
        positive = self.action_selection == "sc"  # SC(c) with c <= 0 would perturb nothing
        require(self.selection_coef > 0 if positive else self.selection_coef >= 0, "model.traces.selection_coef",
                self.selection_coef, "positive for sc" if positive else "0 or more")


class TraceSource:
    """Makes a method's dynamics model (``model_class``) and, each epoch, the traces it imagines
    from the demo states (``generate``); knows the demo action scale and the state bounds."""

    model_class: type

    def __init__(self, settings: TraceSettings, demo_action_std: torch.Tensor,
                 state_bounds: tuple[torch.Tensor, torch.Tensor] | None):
        self.settings, self.demo_action_std, self.state_bounds = settings, demo_action_std, state_bounds

    def to(self, device) -> "TraceSource":
        self.demo_action_std = self.demo_action_std.to(device)
        if self.state_bounds is not None:
            self.state_bounds = tuple(b.to(device) for b in self.state_bounds)
        return self

    def generate(self, model, policy, starts: torch.Tensor, depths: torch.Tensor,
                 generator: torch.Generator) -> TensorDict:
        """Roll trace i from ``starts[i]`` for ``depths[i]`` steps (``depths`` descending, so that
        the traces still rolling at each step are a prefix); step t's rows follow step t-1's."""
        raise NotImplementedError


class BackwardTraces(TraceSource):
    """BMIL's trace source: roll B back from each start, s' -> a ~ B_A (perturbed) -> s ~ B_S."""

    model_class = BackwardsModel

    @torch.no_grad()
    def generate(self, model: BackwardsModel, policy, starts: torch.Tensor, depths: torch.Tensor,
                 generator: torch.Generator) -> TensorDict:
        """The perturbation applies to the first action, as the paper says, or to every step with
        ``selection_every_step`` (what the original code did). ``state_bounds`` clamps every
        imagined state into where states can be (a maze trace must not leave the maze)."""
        cfg = self.settings
        next_obs = starts
        steps = []
        for t, rolling in enumerate(_rolling(depths)):
            next_obs = next_obs[:rolling]
            mean, std, logvar = model.action_distribution(next_obs, cfg.variance_as_std)
            use = cfg.action_selection if (t == 0 or cfg.selection_every_step) else "none"
            action = select_action(mean, std, logvar, use, cfg.selection_coef, self.demo_action_std, generator)
            if cfg.clip_actions:  # the policy is tanh-bounded; labels outside [-1, 1] are unreachable
                action = action.clamp(-1.0, 1.0)
            obs = model.sample_previous(next_obs, action, generator, cfg.variance_as_std)
            if self.state_bounds is not None:
                obs = torch.clamp(obs, *self.state_bounds)
            steps.append((obs, action, next_obs, t))
            next_obs = obs
        return _stack(steps)


class ForwardTraces(TraceSource):
    """The ablation's trace source: roll a forward model L steps from every state with a = pi(s)."""

    model_class = ForwardModel

    @torch.no_grad()
    def generate(self, model: ForwardModel, policy, starts: torch.Tensor, depths: torch.Tensor,
                 generator: torch.Generator) -> TensorDict:
        obs = starts
        steps = []
        for t, rolling in enumerate(_rolling(depths)):
            obs = obs[:rolling]
            action = policy(obs)
            next_obs = model.sample_next(obs, action, generator)
            steps.append((obs, action, next_obs, t))
            obs = next_obs
        return _stack(steps)


TRACE_SOURCES = {"backward": BackwardTraces, "forward": ForwardTraces}


def _rolling(depths: torch.Tensor) -> list[int]:
    """How many traces are still rolling at each step, for depths in descending order."""
    steps = torch.arange(int(depths[0]) if len(depths) else 0)
    return (depths.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()


def _stack(steps) -> TensorDict:
    obs, action, next_obs, step = zip(*steps)
    return TensorDict(
        {
            "obs": torch.cat(obs),
            "action": torch.cat(action),
            "next_obs": torch.cat(next_obs),
            "trace_step": torch.cat([torch.full((len(o),), t, dtype=torch.int64) for o, t in zip(obs, step)]),
        },
        batch_size=[sum(len(o) for o in obs)],
    )


@dataclass
class DrawPlan:
    """The trace rows an epoch's policy steps draw, drawn before the traces are rolled.

    Algorithm 1 rolls K traces of L steps from every demo state and then draws rows uniformly with
    replacement; the draws do not depend on what the rows hold, so drawing their positions first
    and rolling only the traces they hit gives the policy rows of the same distribution.
    """

    starts: torch.Tensor  # the traces to roll (indices into the N * K starts), deepest first
    depths: torch.Tensor  # how many steps each of them is rolled, descending
    rows: torch.Tensor  # every draw, in draw order: its position among the rolled rows


def plan_draws(traces: int, length: int, draws: int, generator: torch.Generator) -> DrawPlan:
    """``draws`` uniform draws among ``traces * length`` rows laid out step by step (row
    t * traces + i is step t of trace i), mapped to where ``generate`` puts them when it rolls
    only ``starts`` to ``depths``."""
    index = torch.randint(traces * length, (draws,), generator=generator)
    trace, step = index % traces, index // traces
    depth = torch.zeros(traces, dtype=torch.int64).scatter_reduce(0, trace, step + 1, reduce="amax")
    order = torch.argsort(depth, descending=True, stable=True)[: int((depth > 0).sum())]
    rank = torch.empty(traces, dtype=torch.int64)
    rank[order] = torch.arange(len(order))
    rolling = torch.tensor(_rolling(depth[order]))
    first_row = torch.cumsum(rolling, 0) - rolling  # where each step's rows begin
    return DrawPlan(order, depth[order], first_row[step] + rank[trace])


class TraceBuffer:
    """The traces of the last ``epochs`` epochs (1: the current one) in a TorchRL replay buffer,
    sampled uniformly with an explicit generator so that training is reproducible and resumes
    exactly. With several epochs the storage is a ring: a new epoch's traces overwrite the oldest.

    The buffer's storage holds the traces (and is what checkpoints save); ``sample`` reads a
    snapshot of its tensors taken when they are replaced, because going through the replay
    buffer's indexing costs ~0.3 ms per minibatch, a fifth of a whole policy step.
    """

    def __init__(self, capacity: int, epochs: int = 1):
        self.capacity, self.epochs = capacity, epochs
        self.buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(capacity), batch_size=1)
        self._snapshot: dict[str, torch.Tensor] = {}

    def add_epoch(self, traces: TensorDict) -> None:
        """This epoch's traces: they replace the buffer's contents, or with several epochs kept,
        the oldest traces."""
        if len(traces) > self.capacity // self.epochs:
            raise ValueError(f"{len(traces)} traces exceed one epoch's share of the buffer, "
                             f"{self.capacity // self.epochs}")
        if self.epochs == 1:
            self.buffer.empty()
        self.buffer.extend(traces)
        self._take_snapshot()

    def _take_snapshot(self) -> None:
        contents = self.buffer[: len(self.buffer)]
        self._snapshot = {key: contents[key] for key in ("obs", "action", "next_obs", "trace_step")}

    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.rows(torch.randint(len(self.buffer), (n,), generator=generator))

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self._snapshot.items()}

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state)
        if len(self.buffer):
            self._take_snapshot()
