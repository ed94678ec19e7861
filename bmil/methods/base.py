"""What every imitation method has: demonstrations, a policy trained on minibatches of them,
per-epoch random generators, counters, checkpoint state and evaluation for ``validate``/``test``.

A method is a LightningModule with manual optimization whose ``training_step`` runs one whole outer
epoch (the dataloader yields one item per epoch), so Lightning's per-batch machinery stays off the
hot loop. Every random draw of an epoch comes from a generator seeded by (seed, rank, epoch): the RNG
state at an epoch boundary is a function of the checkpoint's counters, and a resumed run replays the
interrupted epoch exactly. Every optimizer step goes through ``manual_backward``, so under DDP
Lightning synchronises the gradients of whichever network is being trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Literal, Optional, TypeVar

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from bmil.demos import default_demo_path, empty_or_missing, generate_demos, load_demos
from bmil.distributed import default_workers, rank_shard
from bmil.domains import get_domain
from bmil.errors import BMILError, require
from bmil.evaluation import Evaluator
from bmil.models import make_policy

S = TypeVar("S")


@dataclass
class DemoSettings:
    """The demonstrations.

    Args:
        path: Demonstration folder; generated (and cached) if missing. Default
            demos/<env>_n<num>_s<seed>.
        num: Number of demonstrations (paper: Push 5, PickAndPlace 10, mazes 20).
        seed: Seed of the expert that generates missing demos.
        stop_on_success: Generate missing demos that end at their first success, as the original's
            did (default: the full horizon, showing the goal being held).
    """

    path: Optional[str] = None
    num: int = 10
    seed: int = 0
    stop_on_success: bool = False

    def __post_init__(self):
        require(self.num >= 1, "model.demos.num", self.num, "at least 1")


@dataclass
class PolicySettings:
    """The policy and its training.

    Args:
        batch_size: B, policy minibatch size (Fetch 64, mazes 256).
        steps_per_epoch: M, policy gradient steps per outer epoch.
        lr: Adam learning rate of the policy.
        head: deterministic (tanh mean trained by MSE, as the original code) or gaussian (adds a
            log-std head, trained by NLL: the paper's maximum-likelihood form).
        ema_decay: 0 (the paper): the trained weights act. In (0, 1): an exponential moving
            average of the weights, updated after every policy step with this decay, acts in every
            evaluation and export (0.999 averages over about the last 1,000 steps).
        lr_decay_epochs: Decay the learning rate over the last this many epochs (cosine, to
            lr * lr_decay_to at the last epoch); 0 (the paper): a constant rate.
        lr_decay_to: The final learning rate as a fraction of lr.
    """

    batch_size: int = 64
    steps_per_epoch: int = 100
    lr: float = 3e-4
    head: str = "deterministic"
    ema_decay: float = 0.0
    lr_decay_epochs: int = 0
    lr_decay_to: float = 0.0

    def __post_init__(self):
        require(self.batch_size >= 1, "model.policy.batch_size", self.batch_size, "at least 1")
        require(self.steps_per_epoch >= 1, "model.policy.steps_per_epoch", self.steps_per_epoch, "at least 1")
        require(0 < self.lr < float("inf"), "model.policy.lr", self.lr, "a positive number")
        require(0 <= self.ema_decay < 1, "model.policy.ema_decay", self.ema_decay, "0 (off) or in (0, 1)")
        require(self.lr_decay_epochs >= 0, "model.policy.lr_decay_epochs", self.lr_decay_epochs, "0 (off) or more")
        require(0 <= self.lr_decay_to <= 1, "model.policy.lr_decay_to", self.lr_decay_to, "in [0, 1]")

    def lr_at(self, epoch: int, max_epochs: int) -> float:
        """The learning rate of ``epoch`` (0-based) in a run of ``max_epochs``."""
        start = max_epochs - self.lr_decay_epochs
        if self.lr_decay_epochs == 0 or epoch < start:
            return self.lr
        progress = (epoch - start + 1) / self.lr_decay_epochs  # 1 at the last epoch
        return self.lr * (self.lr_decay_to + (1 - self.lr_decay_to) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class EvalSettings:
    """Evaluation of ``bmil validate`` and ``bmil test`` (fit evaluates through its callbacks).

    Args:
        val_episodes: Robustness episodes of ``bmil validate`` (a seeded subset).
        test_episodes: Robustness episodes of ``bmil test`` (the paper's 10,000).
        training_episodes: Episodes from the training start distribution.
        seed: Seed of the start-state lists.
        success: Judge success at the final step or at any step.
        workers: Evaluation worker processes per rank (default: the cores shared by the ranks).
    """

    val_episodes: int = 500
    test_episodes: int = 10000
    training_episodes: int = 10
    seed: int = 0
    success: Literal["final", "any"] = "final"
    workers: Optional[int] = None

    def __post_init__(self):
        for key in ("val_episodes", "test_episodes", "training_episodes"):
            require(getattr(self, key) >= 1, f"model.evaluation.{key}", getattr(self, key), "at least 1")
        require(self.workers is None or self.workers >= 0, "model.evaluation.workers", self.workers,
                "0 (in-process) or more")


def as_settings(cls: type[S], value) -> S:
    """``value`` as a ``cls`` dataclass (checkpoints and plain Python callers may give a dict)."""
    return cls(**value) if isinstance(value, dict) else value


class _Items(Dataset):
    """``n`` placeholder items: one per training epoch (the data lives in the module), one per
    validate/test evaluation."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class ImitationMethod(L.LightningModule):
    """Base of every method: subclasses add networks, optimizers and a ``training_step``."""

    def __init__(self, env: str = "pickplace", demos: DemoSettings = DemoSettings(),
                 policy: PolicySettings = PolicySettings(), seed: int = 0,
                 evaluation: EvalSettings = EvalSettings()):
        """
        Args:
            env: Domain name (push, pickplace, point_umaze, ...) or a factory's import path.
            demos: The demonstrations.
            policy: The policy and its training.
            seed: Seed of every random draw in training (minibatches, splits, traces).
            evaluation: Evaluation of bmil validate / bmil test.
        """
        super().__init__()
        # Evaluation settings stay out of the checkpoint: LightningCLI restores a checkpoint's
        # hyper-parameters over the command line, and `bmil test --model.evaluation...` must win.
        self.save_hyperparameters(ignore=["evaluation"])
        for key, value in self.hparams.items():  # plain data, so checkpoints load weights-only
            if is_dataclass(value):
                self.hparams[key] = asdict(value)
        self.automatic_optimization = False
        self.demo_cfg = as_settings(DemoSettings, demos)
        self.policy_cfg = as_settings(PolicySettings, policy)
        self.eval_cfg = as_settings(EvalSettings, evaluation)
        self.seed = seed
        self.domain = get_domain(env)
        self.policy = make_policy(self.policy_cfg.head, self.domain.obs_dim, self.domain.act_dim)
        self.policy_average = None  # the averaged weights that act, with policy.ema_decay
        if self.policy_cfg.ema_decay > 0:
            self.policy_average = AveragedModel(self.policy, multi_avg_fn=get_ema_multi_avg_fn(
                self.policy_cfg.ema_decay), use_buffers=True).requires_grad_(False)
        self.policy_step = 0  # own counter: Lightning's global_step counts every network's steps
        self.demo_data = None  # the loaded demos (a TensorDict on the CPU), after setup("fit")
        self._rng = torch.Generator()
        self._metrics: dict[str, float] = {}

    # ---- data -----------------------------------------------------------------------------------
    @property
    def demo_path(self) -> Path:
        cfg = self.demo_cfg
        return Path(cfg.path) if cfg.path else default_demo_path(self.hparams.env, cfg.num, cfg.seed,
                                                                 cfg.stop_on_success)

    def prepare_data(self) -> None:
        """Generate the demos once (Lightning runs this on one process per node)."""
        if type(self).training_step is ImitationMethod.training_step:
            self.training_step(None, 0)  # the base is no method: say so before any demos are made
        if self.trainer.state.fn == TrainerFn.FITTING and empty_or_missing(self.demo_path):
            cfg = self.demo_cfg
            print(f"demos {self.demo_path} not found: generating {cfg.num} {self.domain.name} demos")
            generate_demos(self.hparams.env, cfg.num, cfg.seed, self.demo_path, cfg.stop_on_success)

    def setup(self, stage: str) -> None:
        if stage != "fit":  # validate/test only evaluate the policy
            return
        td, meta = load_demos(self.demo_path, env=self.hparams.env)
        if meta["episodes"] != self.demo_cfg.num:
            raise BMILError(
                f"{self.demo_path} holds {meta['episodes']} demos but demos.num is "
                f"{self.demo_cfg.num}. Set model.demos.num to {meta['episodes']} or point "
                "model.demos.path to another dataset."
            )
        self.demo_data = td
        self.transitions = {k: td[k] for k in ("obs", "action", "next_obs")}
        self.setup_method()

    def setup_method(self) -> None:
        """Fit what depends on the demos (normalisers, splits); ``self.transitions`` is loaded."""

    def on_fit_start(self) -> None:
        # setup() runs before the strategy moves the module to its device; move the data now.
        self.transitions = {k: v.to(self.device) for k, v in self.transitions.items()}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Items(1), batch_size=None)

    def demo_rows_at(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs, action, next_obs) demo rows at ``idx``, the dynamics models' argument order."""
        t = self.transitions
        return t["obs"][idx], t["action"][idx], t["next_obs"][idx]

    # ---- optimizers, by name -----------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # fused: one kernel for all parameters, 3-4x faster than the default per-tensor loop on CPU.
        return {"policy": torch.optim.Adam(self.policy.parameters(), lr=self.policy_cfg.lr, fused=True)}

    def configure_optimizers(self):
        named = self.make_optimizers()
        self._optimizer_names = list(named)
        return list(named.values())

    def optimizer(self, name: str):
        opts = self.optimizers()
        opts = opts if isinstance(opts, (list, tuple)) else [opts]
        return opts[self._optimizer_names.index(name)]

    def step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    # ---- one epoch ------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx) -> torch.Tensor:
        raise BMILError("No method to train: name one with --model BMIL (or BC, VINS), or start from a "
                        "config that does, e.g. --config conf/pickplace.yaml.")

    def start_epoch(self) -> None:
        """This epoch's generator, a function of (seed, rank, epoch), and fresh metrics."""
        seed = hash((self.seed, self.global_rank, self.current_epoch)) & (2**63 - 1)
        self._rng = torch.Generator().manual_seed(seed)
        self._metrics = {}

    def demo_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(obs, action) of ``n`` demo rows drawn uniformly with replacement."""
        idx = torch.randint(len(self.transitions["obs"]), (n,), generator=self._rng)
        return self.transitions["obs"][idx], self.transitions["action"][idx]

    def policy_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(obs, action) rows of one policy step: B demo rows (methods with more data override)."""
        return self.demo_batch(self.policy_cfg.batch_size)

    def train_policy(self) -> torch.Tensor:
        """M policy steps, each on ``policy_batch()``, at this epoch's learning rate; the averaged
        weights (``policy.ema_decay``) follow every step."""
        opt, steps = self.optimizer("policy"), self.policy_cfg.steps_per_epoch
        lr = self.policy_lr()
        for group in opt.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for _ in range(steps):
            loss = self.policy.loss(*self.policy_batch())
            self.step(opt, loss)
            if self.policy_average is not None:
                self.policy_average.update_parameters(self.policy)
            total += loss.detach()
        self.policy_step += steps
        mean = total / steps
        self.check_finite(mean, "policy", "policy.lr")  # once per epoch: a NaN step poisons the mean
        self._metrics.update({"train/policy_loss": mean.item(), "train/policy_steps": float(self.policy_step),
                              "train/policy_lr": lr})
        return mean

    def policy_lr(self) -> float:
        """This epoch's policy learning rate (``policy.lr_decay_epochs``)."""
        cfg = self.policy_cfg
        if cfg.lr_decay_epochs == 0:
            return cfg.lr
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise BMILError("model.policy.lr_decay_epochs needs a finite trainer.max_epochs (the decay "
                            "ends at the last epoch); set --trainer.max_epochs.")
        return cfg.lr_at(self.current_epoch, max_epochs)

    def check_finite(self, loss: torch.Tensor, which: str, setting: str) -> None:
        if not torch.isfinite(loss):
            raise BMILError(
                f"The {which} loss became {loss.item()} at epoch {self.current_epoch} (policy step "
                f"{self.policy_step}). Lower model.{setting}, and check the demos for outliers "
                "(bmil demos regenerates them)."
            )

    def on_train_epoch_end(self) -> None:
        self.log_dict(self._metrics, prog_bar=False, batch_size=1)
        self.log("loss", self._metrics["train/policy_loss"], prog_bar=True, logger=False, batch_size=1)

    @property
    def acting_policy(self) -> torch.nn.Module:
        """The policy network that acts: the averaged weights with ``policy.ema_decay``, else the
        trained ones."""
        return self.policy if self.policy_average is None else self.policy_average.module

    def agent(self) -> torch.nn.Module:
        """What acts in evaluations (VINS adds value-based action selection)."""
        return self.acting_policy

    # ---- bmil validate / bmil test ---------------------------------------------------------------
    def val_dataloader(self) -> DataLoader:
        # During fit the callbacks evaluate (periodically, in worker processes): no val loop.
        return DataLoader(_Items(0 if self.trainer.state.fn == TrainerFn.FITTING else 1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Items(1), batch_size=None)

    def validation_step(self, batch, batch_idx) -> None:
        self._evaluate("val", self.eval_cfg.val_episodes)

    def test_step(self, batch, batch_idx) -> None:
        self._evaluate("test", self.eval_cfg.test_episodes)

    def _evaluate(self, stage: str, episodes: int) -> None:
        cfg = self.eval_cfg
        workers = default_workers(self.trainer) if cfg.workers is None else cfg.workers
        with Evaluator(self.domain, workers) as evaluator:
            def run(kind, n):
                return evaluator.run(self.agent(), kind, n, cfg.seed, cfg.success, rank_shard(self.trainer))

            training, robust = run("training", cfg.training_episodes), run("robustness", episodes)
        self.log_dict({f"{stage}/training_success": training.rate, **robust.metrics(f"{stage}/robustness")},
                      batch_size=1)

    # ---- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bmil"] = self.checkpoint_state()

    def checkpoint_state(self) -> dict:
        """What a resumed run needs beyond the networks and optimizers."""
        return {"policy_step": self.policy_step}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.policy_step = checkpoint["bmil"]["policy_step"]
