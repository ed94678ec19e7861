"""BMIL: Algorithm 1 of the paper. Each outer epoch trains the dynamics model on the demos, rolls
imagined traces out of it from every demo state into the trace buffer (only those the epoch's
batches draw), then takes M policy steps on batches of int(p_d * B) demo rows and B - int(p_d * B)
trace rows (Eqn. 2).

The forward-model ablation (the paper's Table 2) is the same loop with another trace source, and
"model first" (its Table 6) another model schedule.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Literal, Optional

import torch

from bmil.errors import BMILError, require
from bmil.methods.base import ImitationMethod, as_settings
from bmil.methods.model_cache import ModelCache, model_key
from bmil.methods.registry import register
from bmil.traces import TRACE_SOURCES, TraceBuffer, TraceSettings, plan_draws, trace_length
from bmil.tuning.space import Param, Task


@dataclass
class ModelSettings:
    """The dynamics model and how it trains each epoch.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam (coupled L2) weight decay.
        batch_size: Minibatch size (default: the policy's).
        schedule: alternate (Algorithm 1: train the model every epoch) or first (the paper's
            Table 6: in the first epoch, model rounds until its held-out NLL stops improving,
            keeping the best model; then only the policy trains).
        first_patience: With schedule first, stop after this many rounds without a new best
            held-out NLL (at most max_epochs rounds).
        training: converge (passes over the train split until the held-out NLL stops improving)
            or steps (a fixed number of minibatch steps per epoch).
        steps: Minibatch steps per epoch when training is steps.
        holdout_ratio: Share of demo transitions held out to judge convergence.
        patience: Stop after this many passes without relative improvement.
        min_improvement: Relative held-out improvement that counts.
        max_passes: Upper bound on passes per epoch when converging.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: Optional[int] = None
    schedule: Literal["alternate", "first"] = "alternate"
    first_patience: int = 10
    training: Literal["converge", "steps"] = "converge"
    steps: int = 20
    holdout_ratio: float = 0.2
    patience: int = 3
    min_improvement: float = 1e-3
    max_passes: int = 50

    def __post_init__(self):
        require(0 < self.lr < float("inf"), "model.model.lr", self.lr, "a positive number")
        require(self.weight_decay >= 0, "model.model.weight_decay", self.weight_decay, "0 or more")
        require(self.batch_size is None or self.batch_size >= 1, "model.model.batch_size", self.batch_size,
                "at least 1 (or null: the policy's)")
        require(0 < self.holdout_ratio < 1, "model.model.holdout_ratio", self.holdout_ratio, "in (0, 1)")
        require(self.min_improvement >= 0, "model.model.min_improvement", self.min_improvement, "0 or more")
        for key in ("first_patience", "steps", "patience", "max_passes"):
            require(getattr(self, key) >= 1, f"model.model.{key}", getattr(self, key), "at least 1")


_MODEL_METRICS = ("train/model_loss", "train/model_steps_per_epoch", "train/holdout_nll")  # what train_model reports


@register("bmil", tunable=True)
class BMIL(ImitationMethod):
    """Backwards Model-based Imitation Learning (Park & Wong, NeurIPS 2022)."""

    def __init__(self, demo_ratio: float = 0.5, model: ModelSettings = ModelSettings(),
                 traces: TraceSettings = TraceSettings(), **kwargs):
        """
        Args:
            demo_ratio: p_d in (0, 1): each policy batch has int(p_d * B) demo rows, the rest
                traces (the paper: 0.5 on Fetch to 0.95 on the Ant mazes). p_d = 1 is behaviour
                cloning: the class bmil.methods.BC (conf/bc.yaml).
            model: The dynamics model and its training.
            traces: The imagined traces.
            **kwargs: What every method takes (``ImitationMethod``: env, demos, policy, seed,
                evaluation).
        """
        super().__init__(**kwargs)
        if not 0.0 < demo_ratio < 1.0:
            raise BMILError(f"demo_ratio (p_d) must be in (0, 1), got {demo_ratio}. For behaviour cloning "
                            "(p_d = 1) use the method bmil.methods.BC (--config conf/bc.yaml).")
        self.model_cfg = as_settings(ModelSettings, model)
        self.trace_cfg = as_settings(TraceSettings, traces)
        if self.trace_cfg.bound_states and self.domain.obs_bounds is None:
            raise BMILError(f"traces.bound_states needs state bounds, and the {self.domain.name} domain "
                            "has none: give an environment's with model.env.state_bounds (its observation space's "
                            "finite bounds are taken otherwise), or set model.traces.bound_states to false.")
        source = TRACE_SOURCES[self.trace_cfg.source]
        self.model = source.model_class(self.domain.obs_dim, self.domain.act_dim)
        self.demo_rows = int(demo_ratio * self.policy_cfg.batch_size)
        self.trace_rows = self.policy_cfg.batch_size - self.demo_rows
        require(self.demo_rows >= 1, "model.demo_ratio", demo_ratio,
                f"at least 1 / model.policy.batch_size = {1 / self.policy_cfg.batch_size:.4g}, so that "
                f"each batch of {self.policy_cfg.batch_size} has a demo row")
        self.model_step = 0
        self._model_cache_folder: Optional[str] = None
        self._model_cache: Optional[ModelCache] = None
        self.buffer: TraceBuffer | None = None
        self._buffer_state = None
        self._planned_rows: Optional[torch.Tensor] = None  # this epoch's trace draws, where planned

    @classmethod
    def search_space(cls, task: Task) -> list[Param]:
        """p_d; the trace length (up to a tenth of the horizon, at least 3) and when its schedule
        grows, over the trial's own epochs (all of them, the first half, or from a fifth on); SC(c)
        or no action selection; the demo box that bounds imagined states; and the policy's learning
        rate and epochs."""
        longest = max(3, min(task.horizon // 10, task.shortest_demo))
        lengths = tuple([1, n] for n in (1, 3, 5, 10, 20) if n <= longest)
        schedules = ({"of_epochs": [0, 1]}, {"of_epochs": [0, 0.5]}, {"of_epochs": [0.2, 1]})
        return [
            Param("model.demo_ratio", 0.5, 0.95),
            Param("model.traces.length", choices=lengths),
            Param("model.traces.length_epochs", choices=schedules),
            Param("model.traces.action_selection", choices=("sc", "none")),
            Param("model.traces.selection_coef", 1.0, 100.0, log=True, when={"model.traces.action_selection": ["sc"]}),
            Param("model.traces.demo_bounds_margin", choices=(None, 0.0, 0.1, 0.3)),
            *super().search_space(task),
        ]

    # ---- Algorithm 1 ----------------------------------------------------------------------------
    def before_policy(self) -> None:
        """Lines 2-3 of Algorithm 1; the base's epoch then runs lines 4-7, M policy steps on demo and
        trace rows at ratio p_d."""
        if self.model_cfg.schedule == "alternate":
            self.train_model()  # line 2: fit the model on the demos (or load it where a fit before trained it)
        elif self.current_epoch == 0:
            self.train_model_first()  # (Table 6: once, to its best held-out NLL)
        self.generate_traces()  # line 3: K traces from every demo state (those the epoch draws) into the buffer

    def train_model(self) -> None:
        """One epoch of model training: to convergence on the held-out split, or a fixed number
        of minibatch steps; with a model cache (``use_model_cache``), this epoch's model as a fit
        with the same demos, seed and model settings trained it."""
        kept = self._model_cache.load(self.current_epoch) if self._model_cache else None
        if kept is not None:
            self.model.load_state_dict(kept["model"])
            self.optimizer("model").optimizer.load_state_dict(kept["optimizer"])
            self._rng.set_state(kept["rng"])
            self.model_step += kept["steps"]
            self._metrics.update(kept["metrics"])
            progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            for _ in range(kept["steps"]):  # Lightning's step count (records name it) as if trained here
                progress.increment_ready()
                progress.increment_completed()
            return
        if self.model_cfg.training == "steps":
            steps, total = self._model_steps(self.model_cfg.steps)
        else:
            steps, total = self._model_to_convergence()
        self.model_step += steps
        self._metrics.update({"train/model_loss": total / steps, "train/model_steps_per_epoch": float(steps)})
        if self._model_cache:
            self._model_cache.save(self.current_epoch, {
                "model": self.model.state_dict(), "optimizer": self.optimizer("model").optimizer.state_dict(),
                "rng": self._rng.get_state(), "steps": steps,
                "metrics": {k: v for k, v in self._metrics.items() if k in _MODEL_METRICS}})

    def use_model_cache(self, folder: str) -> None:
        self._model_cache_folder = folder  # the key needs the demos: the cache opens in setup_method

    def _model_steps(self, n: int) -> tuple[int, float]:
        """``n`` minibatch steps over shuffled passes of the train split."""
        steps, total = 0, 0.0
        while steps < n:
            for idx in self._shuffled_pass():
                total += self._model_step(idx)
                steps += 1
                if steps == n:
                    break
        return steps, total

    def _model_to_convergence(self) -> tuple[int, float]:
        """Passes until the held-out NLL stops improving by ``min_improvement`` for ``patience``
        passes (at most ``max_passes``)."""
        cfg = self.model_cfg
        best, stale, passes, steps, total = math.inf, 0, 0, 0, 0.0
        while True:
            for idx in self._shuffled_pass():
                total += self._model_step(idx)
                steps += 1
            passes += 1
            holdout = self._holdout_loss().item()
            if passes == 1 or holdout < best - cfg.min_improvement * abs(best):
                best, stale = holdout, 0
            else:
                stale += 1
            if stale >= cfg.patience or passes >= cfg.max_passes:
                self._metrics["train/holdout_nll"] = holdout
                return steps, total

    def _model_step(self, idx: torch.Tensor) -> float:
        loss = self.model.loss(*self.demo_rows_at(idx))
        self.check_finite(loss, "dynamics-model", "model.lr")
        self.step(self.optimizer("model"), loss)
        return loss.item()

    def train_model_first(self) -> None:
        """Table 6's "model first": rounds of model training (each what one epoch of Algorithm 1
        gives) while the held-out NLL improves, then the best model is kept for the whole run.

        Why early-stopped: the model overfits the few demos round after round (held-out NLL on
        PickAndPlace about -1 at its best, 21-71 after 200 rounds), and a policy trained from the
        start on such a model's traces stays poor (mean 25% robustness over 3 seeds, and 19% when
        the model kept training every epoch after that); one round alone was worse still (<4%).
        """
        self.check_run(self.trainer.max_epochs)
        max_rounds = self.trainer.max_epochs
        best, best_state, stale, steps = math.inf, None, 0, 0
        for _ in range(max_rounds):
            self.train_model()
            steps += int(self._metrics["train/model_steps_per_epoch"])
            holdout = self._holdout_loss()
            self.check_finite(holdout, "held-out dynamics-model", "model.lr")  # or no best to keep
            if holdout.item() < best:
                best, best_state, stale = holdout.item(), copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
            if stale >= self.model_cfg.first_patience:
                break
        self.model.load_state_dict(best_state)
        self._metrics.update({"train/model_steps_per_epoch": float(steps), "train/holdout_nll": best})

    @torch.no_grad()
    def _holdout_loss(self) -> torch.Tensor:
        """The held-out NLL, averaged over DDP ranks so that every rank takes the same decision."""
        loss = self.model.loss(*self.demo_rows_at(self.holdout_idx))
        return self.trainer.strategy.reduce(loss, reduce_op="mean")

    def _shuffled_pass(self) -> list[torch.Tensor]:
        """Minibatch indices of one shuffled pass over the train split."""
        size = self.model_cfg.batch_size or self.policy_cfg.batch_size
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self._rng)]
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < size:  # merge the short tail, as the original
            tail = batches.pop()
            batches[-1] = torch.cat([batches[-1], tail])
        return batches

    @torch.no_grad()
    def generate_traces(self) -> None:
        """K traces of this epoch's length L from every demo state. Where the epoch's M policy steps
        draw fewer trace rows than those traces hold (with one epoch's traces in the buffer), the
        draws come first and only the traces they hit are rolled, each to its deepest drawn row:
        the rows the policy sees keep Algorithm 1's distribution, and no trace is rolled further
        than a draw needs."""
        cfg = self.trace_cfg
        length = trace_length(self.current_epoch, cfg.length, cfg.length_epochs)
        t0 = time.perf_counter()
        starts = self.trace_starts.repeat(cfg.per_state, 1)
        draws = self.trace_rows * self.policy_cfg.steps_per_epoch
        if cfg.keep_epochs == 1 and draws < len(starts) * length:
            plan = plan_draws(len(starts), length, draws, self._rng)
            starts, depths, self._planned_rows = starts[plan.starts.to(starts.device)], plan.depths, plan.rows
        else:
            depths, self._planned_rows = torch.full((len(starts),), length), None
        traces = self.trace_source.generate(self.model, self.policy, starts, depths, self._rng)
        if not torch.isfinite(traces["obs"]).all():
            raise BMILError(
                f"The dynamics model produced non-finite trace states at epoch {self.current_epoch}. "
                "Lower model.model.lr or use model.traces.action_selection none to find the cause."
            )
        self.buffer.add_epoch(traces.cpu())  # the buffer lives in host memory
        self._metrics.update({"train/trace_length": float(length), "train/traces": float(len(traces)),
                              "perf/traces_per_s": len(traces) / max(time.perf_counter() - t0, 1e-9)})

    def policy_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """int(p_d * B) demo rows and B - int(p_d * B) trace rows (the next of the planned draws,
        where the epoch planned them)."""
        obs, action = self.demo_batch(self.demo_rows)
        if self._planned_rows is None:
            traces = self.buffer.sample(self.trace_rows, self._rng)
        else:
            traces = self.buffer.rows(self._planned_rows[: self.trace_rows])
            self._planned_rows = self._planned_rows[self.trace_rows:]
        return (torch.cat([obs, traces["obs"].to(self.device)]),
                torch.cat([action, traces["action"].to(self.device)]))

    # ---- set-up, optimizers, checkpoints ----------------------------------------------------------
    def check_run(self, max_epochs: int | None) -> None:
        super().check_run(max_epochs)
        if self.model_cfg.schedule == "first" and (max_epochs is None or max_epochs < 1):
            raise BMILError("model.model.schedule first needs a finite trainer.max_epochs (its maximum "
                            "number of model training rounds); set --trainer.max_epochs.")

    def setup_method(self) -> None:
        n = len(self.transitions["obs"])
        split = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_hold = max(1, int(self.model_cfg.holdout_ratio * n))
        self.holdout_idx, self.train_idx = split[:n_hold], split[n_hold:]
        # On resume the checkpoint's statistics (identical by construction) overwrite these.
        self.model.fit_normalization(*self.demo_rows_at(self.train_idx))
        self.trace_source = TRACE_SOURCES[self.trace_cfg.source](
            self.trace_cfg, self.transitions["action"].std(0), self._state_bounds())
        if self._model_cache_folder and self.model_cfg.schedule == "alternate":
            self._model_cache = ModelCache(self._model_cache_folder, model_key(self))
        # DDP: each rank rolls traces out from its own share of the demo states.
        rank, world = self.global_rank, max(1, self.trainer.world_size if self._trainer else 1)
        self.trace_starts = self.transitions["obs"][rank::world]
        cfg = self.trace_cfg
        capacity = max(cfg.length) * len(self.trace_starts) * cfg.per_state * cfg.keep_epochs
        if self.buffer is None or self.buffer.capacity != capacity:
            self.buffer = TraceBuffer(capacity, cfg.keep_epochs)

    def _state_bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Where imagined states are clamped: the domain's bounds and/or the demos' widened box."""
        cfg, bounds = self.trace_cfg, None
        if cfg.bound_states:
            bounds = tuple(torch.as_tensor(b, dtype=torch.float32) for b in self.domain.obs_bounds)
        if cfg.demo_bounds_margin is not None:
            states = torch.cat([self.transitions["obs"], self.transitions["next_obs"]])
            low, high = states.min(0).values, states.max(0).values
            pad = cfg.demo_bounds_margin * (high - low)
            low, high = low - pad, high + pad
            bounds = (low, high) if bounds is None else (torch.maximum(low, bounds[0]), torch.minimum(high, bounds[1]))
        return bounds

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.trace_starts = self.trace_starts.to(self.device)
        self.trace_source.to(self.device)
        if self._buffer_state is not None:
            self.buffer.load_state_dict(self._buffer_state)
            self._buffer_state = None

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.model_cfg
        return {**super().make_optimizers(),
                "model": torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                          fused=True)}

    def checkpoint_state(self) -> dict:
        return {**super().checkpoint_state(), "model_step": self.model_step, "buffer": self.buffer.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.model_step, self._buffer_state = checkpoint["bmil"]["model_step"], checkpoint["bmil"]["buffer"]
