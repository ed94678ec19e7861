"""BMILModule: Algorithm 1 of the paper as a LightningModule with manual optimization.

One Lightning epoch is one outer epoch of Algorithm 1:
  1. train the dynamics model on the demos (to convergence on a held-out split, or a fixed number
     of steps),
  2. regenerate the imagined traces from every demo state into the trace buffer,
  3. take M policy steps, each mixing int(p_d * B) demo rows with B - int(p_d * B) trace rows.
Each ``training_step`` is exactly one optimizer step (a model step in phase 1, a policy step in
phase 3), so Lightning's DDP synchronises the gradients of whichever network is being trained; the
epoch ends by returning -1 from ``on_train_batch_start`` once the M policy steps are done.
BC is the same module with p_d = 1 (no model, no traces).

Reproducibility: every random draw of an epoch (model minibatches, traces, policy batches) comes
from a generator seeded by (seed, rank, epoch), so the RNG state at any epoch boundary is a
function of the counters in the checkpoint; resuming from a checkpoint (written at epoch ends)
replays the interrupted epoch exactly and ends with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from bmil.demos import default_demo_path, generate_demos, load_demos
from bmil.envs import get_domain
from bmil.errors import BMILError
from bmil.models import BackwardsModel, ForwardModel, Policy
from bmil.traces import TraceBuffer, backward_traces, forward_traces, trace_length


class _Ticks(IterableDataset):
    """An endless stream of step tickets; the module decides what each step does and when the
    epoch ends (the demos and traces live in the module, not in a DataLoader)."""

    def __iter__(self):
        while True:
            yield 0


class BMILModule(L.LightningModule):
    def __init__(
        self,
        env: str = "pickplace",
        demos: Optional[str] = None,
        num_demos: int = 10,
        demo_seed: int = 0,
        seed: int = 0,
        batch_size: int = 64,
        policy_steps_per_epoch: int = 100,
        demo_ratio: float = 0.5,
        policy_lr: float = 3e-4,
        gaussian_policy: bool = False,
        dynamics: Literal["backward", "forward"] = "backward",
        model_lr: float = 1e-3,
        model_weight_decay: float = 1e-5,
        model_batch_size: Optional[int] = None,
        model_training: Literal["converge", "steps"] = "converge",
        model_steps: int = 20,
        holdout_ratio: float = 0.2,
        patience: int = 3,
        min_improvement: float = 1e-3,
        max_model_passes: int = 50,
        traces_per_state: int = 1,
        trace_length: tuple[int, int] = (1, 1),
        trace_length_epochs: tuple[int, int] = (1, 200),
        action_selection: Literal["none", "sc", "rs"] = "sc",
        selection_coef: float = 30.0,
        selection_every_step: bool = False,
        clip_trace_actions: bool = True,
        variance_as_std: bool = False,
    ):
        """
        Args:
            env: Environment short name (push, pickplace, ...).
            demos: Demonstration folder; generated (and cached) if missing. Default
                demos/<env>_n<num_demos>_s<demo_seed>.
            num_demos: Number of demonstrations (paper: Push 5, PickAndPlace 10, mazes 20).
            demo_seed: Seed of the expert that generates missing demos.
            seed: Seed of every random draw in training (minibatches, splits, traces).
            batch_size: B, policy minibatch size (Fetch 64, mazes 256).
            policy_steps_per_epoch: M, policy gradient steps per outer epoch.
            demo_ratio: p_d in (0, 1]: each policy batch has int(p_d * B) demo rows, the rest
                traces. 1.0 is behaviour cloning (no model, no traces).
            policy_lr: Adam learning rate of the policy.
            gaussian_policy: Gaussian policy head trained by NLL instead of tanh mean + MSE.
            dynamics: backward (BMIL) or forward (the paper's Table 2 ablation: rollouts of a
                forward model under the current policy).
            model_lr: Adam learning rate of the dynamics model.
            model_weight_decay: Adam (L2) weight decay of the dynamics model.
            model_batch_size: Dynamics-model minibatch size (default: batch_size).
            model_training: converge (passes over the train split until the held-out NLL stops
                improving) or steps (a fixed number of minibatch steps per epoch).
            model_steps: Minibatch steps per epoch when model_training is steps.
            holdout_ratio: Share of demo transitions held out to judge convergence.
            patience: Stop after this many passes without relative improvement.
            min_improvement: Relative held-out improvement that counts.
            max_model_passes: Upper bound on passes per epoch when converging.
            traces_per_state: K, traces started from every demo state per epoch.
            trace_length: (first, last) trace length L of the linear schedule.
            trace_length_epochs: Epochs (0-based) at which the schedule starts and ends.
            action_selection: Perturbation of the first trace action: none, sc (variance
                scaling SC(c)) or rs (uniform resampling RS(b)).
            selection_coef: c of SC(c) or b of RS(b).
            selection_every_step: Perturb every trace action (what the original code did), not
                only the first (what the paper says).
            clip_trace_actions: Clip sampled trace actions to [-1, 1], the policy's range.
            variance_as_std: Reproduce the original code's use of exp(logvar) as the sampling
                scale (original-code-facts §10.1).
        """
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if not 0.0 < demo_ratio <= 1.0:
            raise BMILError(
                f"demo_ratio (p_d) must be in (0, 1], got {demo_ratio}. Use 1.0 for behaviour "
                "cloning; the paper uses 0.5 (Fetch) to 0.95 (Ant mazes)."
            )
        domain = get_domain(env)
        self.domain = domain
        self.policy = Policy(domain.obs_dim, domain.act_dim, gaussian=gaussian_policy)
        self.uses_traces = demo_ratio < 1.0
        self.model = None
        if self.uses_traces:
            model_cls = BackwardsModel if dynamics == "backward" else ForwardModel
            self.model = model_cls(domain.obs_dim, domain.act_dim)
        self.demo_rows = int(demo_ratio * batch_size)
        self.trace_rows = batch_size - self.demo_rows
        # Own counters: Lightning's global_step counts every optimizer step of both networks.
        self.policy_step = 0
        self.model_step = 0
        self.buffer: TraceBuffer | None = None
        self._phase = "policy"
        self._rng = torch.Generator()
        self._stats: dict[str, float] = {}

    # ---- data -----------------------------------------------------------------------------------
    @property
    def demo_path(self) -> Path:
        hp = self.hparams
        return Path(hp.demos) if hp.demos else default_demo_path(hp.env, hp.num_demos, hp.demo_seed)

    def prepare_data(self) -> None:
        """Generate the demos once (Lightning runs this on one process per node)."""
        if not self.demo_path.exists():
            hp = self.hparams
            print(f"demos {self.demo_path} not found: generating {hp.num_demos} {hp.env} demos")
            generate_demos(hp.env, hp.num_demos, hp.demo_seed, self.demo_path)

    def setup(self, stage: str) -> None:
        td, meta = load_demos(self.demo_path, env=self.hparams.env)
        if meta["episodes"] != self.hparams.num_demos:
            raise BMILError(
                f"{self.demo_path} holds {meta['episodes']} demos but num_demos is "
                f"{self.hparams.num_demos}. Set model.num_demos to {meta['episodes']} or point "
                "model.demos to another dataset."
            )
        self.demos = {k: td[k].to(self.device) for k in ("obs", "action", "next_obs")}
        if not self.uses_traces:
            return
        n = len(td)
        split = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))
        n_hold = max(1, int(self.hparams.holdout_ratio * n))
        self.holdout_idx, self.train_idx = split[:n_hold], split[n_hold:]
        # On resume the checkpoint's statistics (identical by construction) overwrite these.
        self.model.fit_normalization(*(self.demos[k][self.train_idx] for k in ("obs", "action", "next_obs")))
        self.demo_action_std = self.demos["action"].std(0)
        # DDP: each rank rolls traces out from its own share of the demo states.
        rank, world = self.global_rank, max(1, self.trainer.world_size if self._trainer else 1)
        self.trace_starts = self.demos["obs"][rank::world]
        max_len = max(self.hparams.trace_length)
        capacity = max_len * len(self.trace_starts) * self.hparams.traces_per_state
        if self.buffer is None or self.buffer.capacity != capacity:
            self.buffer = TraceBuffer(capacity)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Ticks(), batch_size=None)

    def configure_optimizers(self):
        hp = self.hparams
        opt_policy = torch.optim.Adam(self.policy.parameters(), lr=hp.policy_lr)
        if self.model is None:
            return opt_policy
        opt_model = torch.optim.Adam(self.model.parameters(), lr=hp.model_lr, weight_decay=hp.model_weight_decay)
        return opt_policy, opt_model

    # ---- Algorithm 1 ----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        seed = hash((self.hparams.seed, self.global_rank, self.current_epoch)) & (2**63 - 1)
        self._rng = torch.Generator().manual_seed(seed)
        self._epoch_policy_steps = 0
        self._stats = {"policy_loss": 0.0, "model_loss": 0.0, "model_steps": 0}
        if self.uses_traces:
            self._phase, self._passes, self._stale, self._best = "model", 0, 0, math.inf
            self._epoch_model_steps = 0
            self._pass_batches = self._shuffled_pass()
        else:
            self._phase = "policy"

    def on_train_batch_start(self, batch, batch_idx):
        if self._phase == "done":
            return -1  # M policy steps taken: end the outer epoch
        return None

    def training_step(self, batch, batch_idx):
        if self._phase == "model":
            return self._model_step()
        return self._policy_step()

    def _model_step(self) -> torch.Tensor:
        idx = self._pass_batches.pop()
        loss = self.model.loss(*(self.demos[k][idx] for k in ("obs", "action", "next_obs")))
        self._check_finite(loss, "dynamics-model")
        opt = self.optimizers()[1]
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.model_step += 1
        self._epoch_model_steps += 1
        self._stats["model_loss"] += loss.item()
        self._stats["model_steps"] += 1
        if self._model_converged():
            self._make_traces()
            self._phase = "policy"
        return loss

    def _model_converged(self) -> bool:
        hp = self.hparams
        if hp.model_training == "steps":
            if not self._pass_batches:
                self._pass_batches = self._shuffled_pass()
            return self._epoch_model_steps >= hp.model_steps
        if self._pass_batches:
            return False
        self._passes += 1
        loss = self.trainer.strategy.reduce(self._holdout_loss(), reduce_op="mean").item()
        self._stats["holdout_nll"] = loss
        if self._passes == 1 or loss < self._best - hp.min_improvement * abs(self._best):
            self._best, self._stale = loss, 0
        else:
            self._stale += 1
        if self._stale >= hp.patience or self._passes >= hp.max_model_passes:
            return True
        self._pass_batches = self._shuffled_pass()
        return False

    @torch.no_grad()
    def _holdout_loss(self) -> torch.Tensor:
        idx = self.holdout_idx
        return self.model.loss(*(self.demos[k][idx] for k in ("obs", "action", "next_obs")))

    def _shuffled_pass(self) -> list[torch.Tensor]:
        """Minibatches of one pass over the train split, in the order they are popped."""
        size = self.hparams.model_batch_size or self.hparams.batch_size
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self._rng)]
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < size:  # merge the short tail, as the original
            batches[-2] = torch.cat([batches[-2], batches.pop()])
        return batches[::-1]

    @torch.no_grad()
    def _make_traces(self) -> None:
        hp = self.hparams
        length = trace_length(self.current_epoch, hp.trace_length, hp.trace_length_epochs)
        t0 = time.perf_counter()
        if hp.dynamics == "backward":
            traces = backward_traces(
                self.model, self.trace_starts, length, hp.traces_per_state, hp.action_selection,
                hp.selection_coef, self.demo_action_std, self._rng, hp.selection_every_step,
                hp.clip_trace_actions, hp.variance_as_std,
            )
        else:
            traces = forward_traces(self.model, self.policy, self.trace_starts, length, hp.traces_per_state, self._rng)
        if not torch.isfinite(traces["obs"]).all():
            raise BMILError(
                f"The dynamics model produced non-finite trace states at epoch {self.current_epoch}. "
                "Lower model_lr or use action_selection none to find the cause."
            )
        self.buffer.replace(traces)
        self._stats.update(trace_length=length, traces=len(traces), trace_seconds=time.perf_counter() - t0)

    def _policy_step(self) -> torch.Tensor:
        idx = torch.randint(len(self.demos["obs"]), (self.demo_rows,), generator=self._rng)
        obs, action = self.demos["obs"][idx], self.demos["action"][idx]
        if self.trace_rows:
            traces = self.buffer.sample(self.trace_rows, self._rng)
            obs = torch.cat([obs, traces["obs"].to(self.device)])
            action = torch.cat([action, traces["action"].to(self.device)])
        loss = self.policy.loss(obs, action)
        self._check_finite(loss, "policy")
        opt = self.optimizers()[0] if self.model is not None else self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.policy_step += 1
        self._epoch_policy_steps += 1
        self._stats["policy_loss"] += loss.item()
        if self._epoch_policy_steps >= self.hparams.policy_steps_per_epoch:
            self._phase = "done"
        return loss

    def on_train_epoch_end(self) -> None:
        s, m = self._stats, max(self._epoch_policy_steps, 1)
        metrics = {"train/policy_loss": s["policy_loss"] / m, "train/policy_steps": float(self.policy_step)}
        if self.uses_traces:
            metrics["train/model_loss"] = s["model_loss"] / max(s["model_steps"], 1)
            metrics["train/model_steps_per_epoch"] = float(s["model_steps"])
            for key in ("holdout_nll", "trace_length", "traces"):
                if key in s:
                    metrics[f"train/{key}"] = float(s[key])
            if s.get("trace_seconds"):
                metrics["perf/traces_per_s"] = s["traces"] / s["trace_seconds"]
        self.log_dict(metrics, prog_bar=False, batch_size=1)
        self.log("loss", metrics["train/policy_loss"], prog_bar=True, logger=False, batch_size=1)

    def _check_finite(self, loss: torch.Tensor, which: str) -> None:
        if not torch.isfinite(loss):
            raise BMILError(
                f"The {which} loss became {loss.item()} at epoch {self.current_epoch} "
                f"(policy step {self.policy_step}, model step {self.model_step}). Lower "
                f"{'policy_lr' if which == 'policy' else 'model_lr'}, and check the demos for "
                "outliers (bmil demos regenerates them)."
            )

    # ---- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["bmil"] = {
            "policy_step": self.policy_step,
            "model_step": self.model_step,
            "buffer": self.buffer.state_dict() if self.buffer is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["bmil"]
        self.policy_step, self.model_step = state["policy_step"], state["model_step"]
        self._buffer_state = state["buffer"]

    def on_fit_start(self) -> None:
        state = getattr(self, "_buffer_state", None)
        if state is not None and self.buffer is not None:
            self.buffer.load_state_dict(state)
            self._buffer_state = None
