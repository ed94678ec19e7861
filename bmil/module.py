"""BMILModule: Algorithm 1 of the paper as a LightningModule with manual optimization.

Each Lightning epoch is a single ``training_step`` that runs one outer epoch of Algorithm 1, read
top to bottom in ``training_step``:
  1. train the dynamics model on the demos (to convergence on a held-out split, or a fixed number
     of steps),
  2. regenerate the imagined traces from every demo state into the trace buffer,
  3. take M policy steps, each mixing int(p_d * B) demo rows with B - int(p_d * B) trace rows.
Every optimizer step goes through ``manual_backward``, so under DDP Lightning synchronises the
gradients of whichever network is being trained (the other network's parameters are unused in
that backward pass, hence the ``ddp_find_unused_parameters_true`` default for several devices).
Running a whole epoch per step keeps Lightning's per-batch machinery off the hot loop.
BC is the same module with p_d = 1 (no model, no traces).

Reproducibility: every random draw of an epoch (model minibatches, traces, policy batches) comes
from a generator seeded by (seed, rank, epoch), so the RNG state at any epoch boundary is a
function of the counters in the checkpoint; resuming from a checkpoint (written at epoch ends)
replays the interrupted epoch exactly and ends with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset

from bmil.demos import default_demo_path, generate_demos, load_demos
from bmil.distributed import evaluate_sharded, make_evaluator
from bmil.envs import get_domain
from bmil.errors import BMILError
from bmil.models import BackwardsModel, ForwardModel, Policy
from bmil.models.vins import DynamicsModel, ValueFunction, VINSAgent, VINSSettings, value_loss
from bmil.traces import TraceBuffer, backward_traces, forward_traces, trace_length


class _Items(Dataset):
    """``n`` placeholder items. Training: one per epoch, since ``training_step`` runs a whole outer
    epoch of Algorithm 1 and the demos and traces live in the module (sampled with its own
    generator). Validate/test: one evaluation (DDP gives every rank one item)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class BMILModule(L.LightningModule):
    def __init__(
        self,
        env: str = "pickplace",
        demos: Optional[str] = None,
        num_demos: int = 10,
        demo_seed: int = 0,
        demo_stop_on_success: bool = False,
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
        model_schedule: Literal["alternate", "first"] = "alternate",
        model_first_patience: int = 10,
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
        bound_trace_states: bool = False,
        variance_as_std: bool = False,
        vins: Optional[VINSSettings] = None,
        val_episodes: int = 500,
        test_episodes: int = 10000,
        eval_seed: int = 0,
        eval_success: Literal["final", "any"] = "final",
    ):
        """
        Args:
            env: Environment short name (push, pickplace, ...).
            demos: Demonstration folder; generated (and cached) if missing. Default
                demos/<env>_n<num_demos>_s<demo_seed>.
            num_demos: Number of demonstrations (paper: Push 5, PickAndPlace 10, mazes 20).
            demo_seed: Seed of the expert that generates missing demos.
            demo_stop_on_success: Generate missing demos that end at their first success, as the
                original's did (default: the full horizon, showing the goal being held). VINS on
                Fetch needs this: its reward sits where each demo ends.
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
            model_schedule: alternate (Algorithm 1: train the model every epoch) or first (the
                paper's Table 6: in the first epoch, model rounds until its held-out NLL stops
                improving, keeping the best model; then only the policy trains).
            model_first_patience: With model_schedule first, stop after this many rounds without a
                new best held-out NLL (at most max_epochs rounds).
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
            bound_trace_states: Clamp imagined trace states to the domain's state bounds (the
                mazes' free space and speed limit; the original's bounded_obs, on for mazes).
            variance_as_std: Reproduce the original code's use of exp(logvar) as the sampling
                scale (original-code-facts §10.1).
            vins: Train the VINS baseline instead (needs demo_ratio 1.0, its policy being plain
                BC): a value function and a dynamics model beside the BC policy, and test-time
                selection of the best perturbed BC action (bmil/models/vins.py).
            val_episodes: Robustness episodes of ``bmil validate`` (a seeded subset).
            test_episodes: Robustness episodes of ``bmil test`` (the paper's 10,000).
            eval_seed: Seed of the start-state lists of validate/test.
            eval_success: Judge validate/test success at the final step or at any step.
        """
        super().__init__()
        # Evaluation settings stay out of the checkpoint: LightningCLI restores a checkpoint's
        # hyper-parameters over the command line, and `bmil test --model.test_episodes N` must win.
        self.save_hyperparameters(ignore=["val_episodes", "test_episodes", "eval_seed", "eval_success"])
        self.eval_settings = {"val": val_episodes, "test": test_episodes, "seed": eval_seed,
                              "success": eval_success}
        self.automatic_optimization = False
        if not 0.0 < demo_ratio <= 1.0:
            raise BMILError(
                f"demo_ratio (p_d) must be in (0, 1], got {demo_ratio}. Use 1.0 for behaviour "
                "cloning; the paper uses 0.5 (Fetch) to 0.95 (Ant mazes)."
            )
        domain = get_domain(env)
        self.domain = domain
        if bound_trace_states and domain.obs_bounds is None:
            raise BMILError(
                f"bound_trace_states needs state bounds, and the {env} domain has none (only the "
                "mazes do). Set model.bound_trace_states to false."
            )
        self.policy = Policy(domain.obs_dim, domain.act_dim, gaussian=gaussian_policy)
        self.vins = VINSSettings(**vins) if isinstance(vins, dict) else vins
        if self.vins is not None:
            if demo_ratio != 1.0:
                raise BMILError(f"VINS trains its BC prior on demos only: set demo_ratio to 1.0 (got {demo_ratio}).")
            self.value = ValueFunction(domain.obs_dim)
            self.value_target = ValueFunction(domain.obs_dim).requires_grad_(False)
            self.vins_model = DynamicsModel(domain.obs_dim, domain.act_dim)
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
        self._rng = torch.Generator()
        self._stats: dict[str, float] = {}

    # ---- data -----------------------------------------------------------------------------------
    @property
    def demo_path(self) -> Path:
        hp = self.hparams
        if hp.demos:
            return Path(hp.demos)
        return default_demo_path(hp.env, hp.num_demos, hp.demo_seed, hp.demo_stop_on_success)

    def prepare_data(self) -> None:
        """Generate the demos once (Lightning runs this on one process per node)."""
        if self.trainer.state.fn == TrainerFn.FITTING and not self.demo_path.exists():
            hp = self.hparams
            print(f"demos {self.demo_path} not found: generating {hp.num_demos} {hp.env} demos")
            generate_demos(hp.env, hp.num_demos, hp.demo_seed, self.demo_path, hp.demo_stop_on_success)

    def setup(self, stage: str) -> None:
        if stage != "fit":  # validate/test only evaluate the policy
            return
        td, meta = load_demos(self.demo_path, env=self.hparams.env)
        if meta["episodes"] != self.hparams.num_demos:
            raise BMILError(
                f"{self.demo_path} holds {meta['episodes']} demos but num_demos is "
                f"{self.hparams.num_demos}. Set model.num_demos to {meta['episodes']} or point "
                "model.demos to another dataset."
            )
        self.demos = {k: td[k] for k in ("obs", "action", "next_obs")}
        self.demo_td = td  # the loaded demos (CPU): drawn over the mazes' robustness figure
        if self.vins is not None:
            self.demo_done = td["done"]
            self.value.norm.fit(self.demos["obs"])
            self.value_target.load_state_dict(self.value.state_dict())
            self.vins_model.fit_normalization(*self._transitions(slice(None)))
        if not self.uses_traces:
            return
        n = len(td)
        split = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))
        n_hold = max(1, int(self.hparams.holdout_ratio * n))
        self.holdout_idx, self.train_idx = split[:n_hold], split[n_hold:]
        # On resume the checkpoint's statistics (identical by construction) overwrite these.
        self.model.fit_normalization(*self._transitions(self.train_idx))
        self.demo_action_std = self.demos["action"].std(0)
        # DDP: each rank rolls traces out from its own share of the demo states.
        rank, world = self.global_rank, max(1, self.trainer.world_size if self._trainer else 1)
        self.trace_starts = self.demos["obs"][rank::world]
        max_len = max(self.hparams.trace_length)
        capacity = max_len * len(self.trace_starts) * self.hparams.traces_per_state
        if self.buffer is None or self.buffer.capacity != capacity:
            self.buffer = TraceBuffer(capacity)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Items(1), batch_size=None)

    def configure_optimizers(self):
        hp = self.hparams
        # fused: one kernel for all parameters, 3-4x faster than the default per-tensor loop on CPU.
        opt_policy = torch.optim.Adam(self.policy.parameters(), lr=hp.policy_lr, fused=True)
        if self.vins is not None:
            opt_value = torch.optim.Adam(self.value.parameters(), lr=self.vins.value_lr, fused=True)
            opt_dynamics = torch.optim.Adam(self.vins_model.parameters(), lr=self.vins.model_lr,
                                            weight_decay=1e-5, fused=True)
            return opt_policy, opt_value, opt_dynamics
        if self.model is None:
            return opt_policy
        opt_model = torch.optim.Adam(
            self.model.parameters(), lr=hp.model_lr, weight_decay=hp.model_weight_decay, fused=True
        )
        return opt_policy, opt_model

    # ---- Algorithm 1 ----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx) -> torch.Tensor:
        """One outer epoch of Algorithm 1 (the dataloader yields one item per epoch)."""
        seed = hash((self.hparams.seed, self.global_rank, self.current_epoch)) & (2**63 - 1)
        self._rng = torch.Generator().manual_seed(seed)
        self._stats = {}
        if self.uses_traces:
            if self.hparams.model_schedule == "alternate":
                self.train_dynamics_model()  # line 2: fit B on the demos
            elif self.current_epoch == 0:
                self.train_dynamics_model_first()
            self.generate_traces()  # line 3: K traces from every demo state into the buffer
        if self.vins is not None:
            self.train_vins()  # VINS: value function and dynamics model beside the BC prior
        return self.train_policy()  # lines 4-7: M steps on demo and trace rows at ratio p_d

    def train_dynamics_model(self) -> None:
        """Minibatch passes over the train split until the held-out NLL stops improving by
        ``min_improvement`` for ``patience`` passes (or exactly ``model_steps`` steps)."""
        hp = self.hparams
        opt = self._optimizer(1)
        best, stale, passes, steps, total = math.inf, 0, 0, 0, 0.0
        while True:
            for idx in self._shuffled_pass():
                loss = self.model.loss(*self._transitions(idx))
                self._check_finite(loss, "dynamics-model", "model_lr")
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                steps, total = steps + 1, total + loss.item()
                if hp.model_training == "steps" and steps >= hp.model_steps:
                    break
            passes += 1
            if hp.model_training == "steps":
                if steps >= hp.model_steps:
                    break
                continue
            # DDP: every rank must take the same decision (their losses are equal up to rounding).
            holdout = self.trainer.strategy.reduce(self._holdout_loss(), reduce_op="mean").item()
            if passes == 1 or holdout < best - hp.min_improvement * abs(best):
                best, stale = holdout, 0
            else:
                stale += 1
            if stale >= hp.patience or passes >= hp.max_model_passes:
                self._stats["holdout_nll"] = holdout
                break
        self.model_step += steps
        self._stats.update(model_loss=total / steps, model_steps=steps)

    def train_dynamics_model_first(self) -> None:
        """Table 6's "model first": rounds of model training (each what one epoch of Algorithm 1
        gives) while the held-out NLL improves, then the best model is kept for the whole run.

        Why early-stopped: the model overfits the few demos round after round (held-out NLL on
        PickAndPlace about -1 at its best, 21-71 after 200 rounds), and a policy trained from the
        start on such a model's traces stays poor (mean 25% robustness over 3 seeds, and 19% when
        the model kept training every epoch after that); one round alone was worse still (<4%).
        """
        max_rounds = self.trainer.max_epochs
        if max_rounds is None or max_rounds < 1:
            raise BMILError("model_schedule first needs a finite trainer.max_epochs (its maximum "
                            "number of model training rounds); set --trainer.max_epochs.")
        best, best_state, stale, steps = math.inf, None, 0, 0
        for _ in range(max_rounds):
            self.train_dynamics_model()
            steps += self._stats["model_steps"]
            # DDP: every rank must stop at the same round (their losses are equal up to rounding).
            holdout = self.trainer.strategy.reduce(self._holdout_loss(), reduce_op="mean")
            self._check_finite(holdout, "held-out dynamics-model", "model_lr")  # or no best to keep
            holdout = holdout.item()
            if holdout < best:
                best, best_state, stale = holdout, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
            if stale >= self.hparams.model_first_patience:
                break
        self.model.load_state_dict(best_state)
        self._stats.update(model_steps=steps, holdout_nll=best)

    @torch.no_grad()
    def _holdout_loss(self) -> torch.Tensor:
        return self.model.loss(*self._transitions(self.holdout_idx))

    def _transitions(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs, action, next_obs) demo rows at ``idx``, the dynamics models' argument order."""
        return self.demos["obs"][idx], self.demos["action"][idx], self.demos["next_obs"][idx]

    def _shuffled_pass(self) -> list[torch.Tensor]:
        """Minibatch indices of one shuffled pass over the train split."""
        size = self.hparams.model_batch_size or self.hparams.batch_size
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self._rng)]
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < size:  # merge the short tail, as the original
            tail = batches.pop()
            batches[-1] = torch.cat([batches[-1], tail])
        return batches

    @torch.no_grad()
    def generate_traces(self) -> None:
        hp = self.hparams
        length = trace_length(self.current_epoch, hp.trace_length, hp.trace_length_epochs)
        t0 = time.perf_counter()
        if hp.dynamics == "backward":
            traces = backward_traces(
                self.model, self.trace_starts, length, hp.traces_per_state, hp.action_selection,
                hp.selection_coef, self.demo_action_std, self._rng, hp.selection_every_step,
                hp.clip_trace_actions, hp.variance_as_std, self._state_bounds(),
            )
        else:
            traces = forward_traces(self.model, self.policy, self.trace_starts, length, hp.traces_per_state, self._rng)
        if not torch.isfinite(traces["obs"]).all():
            raise BMILError(
                f"The dynamics model produced non-finite trace states at epoch {self.current_epoch}. "
                "Lower model_lr or use action_selection none to find the cause."
            )
        self.buffer.replace(traces.cpu())  # the buffer lives in host memory
        self._stats.update(trace_length=length, traces=len(traces), trace_seconds=time.perf_counter() - t0)

    def _state_bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.hparams.bound_trace_states:
            return None
        return tuple(torch.as_tensor(b, device=self.device) for b in self.domain.obs_bounds)

    def train_policy(self) -> torch.Tensor:
        """M policy steps, each on int(p_d * B) demo rows and B - int(p_d * B) trace rows."""
        opt = self._optimizer(0)
        n_demo = len(self.demos["obs"])
        total = torch.zeros((), device=self.device)
        for _ in range(self.hparams.policy_steps_per_epoch):
            idx = torch.randint(n_demo, (self.demo_rows,), generator=self._rng)
            obs, action = self.demos["obs"][idx], self.demos["action"][idx]
            if self.trace_rows:
                traces = self.buffer.sample(self.trace_rows, self._rng)
                obs = torch.cat([obs, traces["obs"].to(self.device)])
                action = torch.cat([action, traces["action"].to(self.device)])
            loss = self.policy.loss(obs, action)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            total += loss.detach()
        self.policy_step += self.hparams.policy_steps_per_epoch
        mean = total / self.hparams.policy_steps_per_epoch
        self._check_finite(mean, "policy", "policy_lr")  # once per epoch: a NaN step poisons the mean
        self._stats["policy_loss"] = mean.item()
        return mean

    def train_vins(self) -> None:
        """VINS's value function (TD with interpolation and negative sampling, a soft-updated
        target) and its deterministic dynamics model, on uniformly sampled demo transitions."""
        s, n = self.vins, len(self.demos["obs"])
        obs_std = self.value.norm.std
        opt_value, opt_dynamics = self._optimizer(1), self._optimizer(2)
        total_v = total_f = 0.0
        for _ in range(s.value_steps):
            idx = torch.randint(n, (s.value_batch_size,), generator=self._rng).to(self.device)
            loss = value_loss(self.value, self.value_target, self.demos["obs"][idx],
                              self.demos["next_obs"][idx], self.demo_done[idx], s, obs_std, self._rng)
            opt_value.zero_grad()
            self.manual_backward(loss)
            opt_value.step()
            with torch.no_grad():
                for p, t in zip(self.value.parameters(), self.value_target.parameters()):
                    t.lerp_(p, s.target_tau)
            total_v += loss.item()
        for _ in range(s.model_steps):
            idx = torch.randint(n, (s.model_batch_size,), generator=self._rng).to(self.device)
            loss = self.vins_model.loss(*self._transitions(idx))
            opt_dynamics.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(opt_dynamics, gradient_clip_val=2.0, gradient_clip_algorithm="norm")
            opt_dynamics.step()
            total_f += loss.item()
        self._check_finite(torch.tensor(total_v), "VINS value-function", "vins.value_lr")
        self._check_finite(torch.tensor(total_f), "VINS dynamics-model", "vins.model_lr")
        self._stats.update(value_loss=total_v / max(s.value_steps, 1),
                           dynamics_loss=total_f / max(s.model_steps, 1))

    def _optimizer(self, i: int):
        """The i-th optimizer of configure_optimizers (0 is the policy's)."""
        opts = self.optimizers()
        return opts[i] if isinstance(opts, (list, tuple)) else opts

    def agent(self) -> torch.nn.Module:
        """What acts in evaluations: the policy, or for VINS the policy with value-based selection."""
        if self.vins is None:
            return self.policy
        return VINSAgent(self.policy, self.vins_model, self.value, self.vins.candidates, self.vins.action_noise)

    def on_train_epoch_end(self) -> None:
        s = self._stats
        metrics = {"train/policy_loss": s["policy_loss"], "train/policy_steps": float(self.policy_step)}
        if self.uses_traces:
            if "model_loss" in s:  # (model_schedule first: only the first epoch trains it)
                metrics["train/model_loss"] = s["model_loss"]
                metrics["train/model_steps_per_epoch"] = float(s["model_steps"])
            metrics["train/trace_length"] = float(s["trace_length"])
            metrics["train/traces"] = float(s["traces"])
            metrics["perf/traces_per_s"] = s["traces"] / max(s["trace_seconds"], 1e-9)
            if "holdout_nll" in s:
                metrics["train/holdout_nll"] = s["holdout_nll"]
        if self.vins is not None:
            metrics["train/vins_value_loss"] = s["value_loss"]
            metrics["train/vins_dynamics_loss"] = s["dynamics_loss"]
        self.log_dict(metrics, prog_bar=False, batch_size=1)
        self.log("loss", metrics["train/policy_loss"], prog_bar=True, logger=False, batch_size=1)

    def _check_finite(self, loss: torch.Tensor, which: str, setting: str) -> None:
        if not torch.isfinite(loss):
            raise BMILError(
                f"The {which} loss became {loss.item()} at epoch {self.current_epoch} "
                f"(policy step {self.policy_step}, model step {self.model_step}). Lower "
                f"{setting}, and check the demos for outliers (bmil demos regenerates them)."
            )

    # ---- bmil validate / bmil test ---------------------------------------------------------------
    def val_dataloader(self) -> DataLoader:
        # During fit the callbacks evaluate (periodically, in worker processes): no val loop.
        return DataLoader(_Items(0 if self.trainer.state.fn == TrainerFn.FITTING else 1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Items(1), batch_size=None)

    def validation_step(self, batch, batch_idx) -> None:
        self._evaluate("val")

    def test_step(self, batch, batch_idx) -> None:
        self._evaluate("test")

    def _evaluate(self, stage: str) -> None:
        """Training success and robustness of the policy, sharded over ranks and gathered."""
        cfg = self.eval_settings
        seed, success = cfg["seed"], cfg["success"]
        with make_evaluator(self.trainer, self.hparams.env) as evaluator:
            def run(starts):
                return evaluate_sharded(self.trainer, evaluator, self.agent(), starts, seed, success)

            training = run(self.domain.training_starts(10, seed))
            robust = run(self.domain.robustness_starts(cfg[stage], seed))
        lo, hi = robust.ci
        self.log_dict({f"{stage}/training_success": training.rate, f"{stage}/robustness": robust.rate,
                       f"{stage}/robustness_ci_low": lo, f"{stage}/robustness_ci_high": hi}, batch_size=1)

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
        # setup() runs before the strategy moves the module to its device; move the data now.
        self.demos = {k: v.to(self.device) for k, v in self.demos.items()}
        if self.vins is not None:
            self.demo_done = self.demo_done.to(self.device)
        if self.uses_traces:
            self.trace_starts = self.trace_starts.to(self.device)
            self.demo_action_std = self.demo_action_std.to(self.device)
        state = getattr(self, "_buffer_state", None)
        if state is not None and self.buffer is not None:
            self.buffer.load_state_dict(state)
            self._buffer_state = None
