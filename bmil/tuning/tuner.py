"""``bmil tune``'s driver: Optuna asks for settings, an executor trains each trial as a ``bmil fit``
(the same seam ``bmil reproduce`` uses), and the trial's validation score is told back.

Three stages, each resumable from the output folder:
1. **Trials**, per method: seeded TPE over the method's search space; every trial trains seed 100 on
   the config's budget and reports its validation checks to Optuna, whose median pruner stops
   hopeless trials (callbacks.TrialReport). The score is ``validation_late``: the mean validation
   robustness over the checks in the second half of training, which one lucky check cannot decide.
2. **Finalists**: the best trials of each method and its defaults are trained again on other seeds
   (101, ...) and validated on more starts; the best mean of these fresh runs is chosen, so the
   upward bias of picking the best of many noisy trials does not decide, and tuned settings replace
   the defaults only where fresh runs agree.
3. **Final test**: the chosen settings and the method's defaults, each on seeds 0..n-1 with the
   config's own test, the best policy by validation tested. Test starts are used here only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bmil.demo_formats import read_demos
from bmil.demos import default_demo_path
from bmil.domains import get_domain
from bmil.errors import BMILError
from bmil.executors import make_executor
from bmil.export import export_policy
from bmil.files import check_folder, write_record, write_text
from bmil.lightning_cli import fit_settings, tuned_task
from bmil.methods import get_method, registered
from bmil.runs.launch import prepare_demos
from bmil.runs.run import Run
from bmil.system import usable_cores
from bmil.tuning import fidelity, outputs
from bmil.tuning.checks import check_space, owned, task_identity
from bmil.tuning.fidelity import FINAL_TEST_ONLY, NO_TEST, UNREAD
from bmil.tuning.plan import print_plan
from bmil.tuning.space import Param, Task, as_overrides, at_fixed_epochs, grid_size, in_epochs, override, suggest
from bmil.tuning.storage import JOURNAL, PRUNERS, mend_journal, open_storage, serve_storage

TPE_STARTUP_TRIALS = 5
TRIAL_SEED = 100  # the trials' training seed; finalists take 101, ...: none of the final runs' (0, 1, ...)


def make_sampler(kind: str, seed: int):
    """Seeded TPE, or every distinct setting of the space's ``Param.grid`` values (in a seeded order)."""
    import optuna

    class Grid(optuna.samplers.BruteForceSampler):
        def after_trial(self, study, trial, state, values) -> None:
            """No ``study.stop()`` once the grid is done: it raises outside ``optimize``, and the tuner
            asks for no more than the grid holds (``grid_size``)."""

    if kind not in ("tpe", "grid"):
        raise BMILError(f"--sampler {kind}: tpe or grid.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "grid":
            return Grid(seed=seed)
        # Optuna's 10 random start-up trials would be most of a small tune; multivariate TPE in groups
        # models the conditional parameters (selection_coef with sc) together with the rest, and the
        # constant liar keeps parallel trials from drawing the same point.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True,
                                          group=True, constant_liar=True)


@dataclass
class Tuner:
    configs: list[str]
    methods: list[str]
    trials: int
    jobs: int
    out: Path
    seed: int = 0
    finalists: int = 3
    finalist_seeds: int = 2
    finalist_episodes: Optional[int] = None  # the config's validation.episodes
    final_seeds: int = 3
    space: Optional[dict] = None  # the user's changes, per method
    sampler: str = "tpe"  # or "grid": every distinct setting of the parameters' grid values
    reference: dict = field(default_factory=dict)  # per method, settings over the config for its defaults
    executor: str = "local"  # or "ray": the fits as tasks on a Ray cluster
    ray_address: Optional[str] = None
    pruner: str = "median"  # or "halving": successive halving (bmil.tuning.storage.make_pruner)
    trial_episodes: Optional[int] = None  # half the config's validation.episodes
    final_run_args = (*UNREAD, *FINAL_TEST_ONLY)  # what a final run adds to the config (the plan times it)

    def __post_init__(self):
        self.out = Path(self.out).resolve()  # the fits report to its journal from their own processes
        check_folder(self.out, "--out")
        self.methods = [get_method(m, "--methods").name for m in self.methods]  # (a method's import path: its name)
        tunable = [name for name, m in registered().items() if m.tunable]
        untunable = [m for m in self.methods if m not in tunable]
        if untunable:
            raise BMILError(f"--methods: bmil tune does not search {', '.join(untunable)} (it declares no search "
                            f"space); it searches {', '.join(tunable)}.")
        self.base = fit_settings(self.config_args())
        validation = self.base["validation"]
        if not validation["every_n_epochs"]:
            raise BMILError("bmil tune scores trials on validation starts: the config must validate "
                            "(validation: {every_n_epochs: 10, episodes: 200}).")
        if validation["seed"] == self.base["robustness"]["seed"]:
            raise BMILError("validation.seed must differ from robustness.seed: the trials are scored on "
                            "validation starts, never on the test's.")
        self.trial_episodes, self.finalist_episodes = fidelity.stage_episodes(
            int(validation["episodes"]), self.trial_episodes, self.finalist_episodes)
        epochs = self.base["trainer"]["max_epochs"]
        if epochs is None or epochs < 1:
            raise BMILError("bmil tune needs a finite trainer.max_epochs in the config (the trials' budget).")
        self.env = self.base["model"]["init_args"]["env"]
        self.domain = get_domain(self.env).name
        check_space(self)
        if self.pruner not in PRUNERS:
            raise BMILError(f"--pruner {self.pruner}: {' or '.join(PRUNERS)}.")
        cores = usable_cores()
        if self.executor == "local" and self.jobs > cores:  # each fit takes one core (one torch thread, evaluations in process)
            raise BMILError(f"--jobs {self.jobs}: this process may use {cores} cores; give at most {cores}.")

    # ---- runs -----------------------------------------------------------------------------------
    def config_args(self) -> list[str]:
        return [arg for c in self.configs for arg in ("--config", c)]

    def _run(self, label: str, method: str, seed: int, settings: dict, extra: tuple = (), stage: str = "") -> Run:
        """A fit of ``method`` on the user's config with ``settings`` over it, of the tune's ``stage``
        (trial, finalist or final)."""
        switch = ("--model", get_method(method).class_path)
        return Run(self.domain, label, seed, tuple(self.configs), (*switch, *as_overrides(settings)),
                   family=get_method(method).label, extra=(*UNREAD, *extra), stage=stage, tags=(("method", method),))

    @property
    def epochs(self) -> int:
        """The config's epochs: a trial's, where the space does not draw them."""
        return int(self.base["trainer"]["max_epochs"])

    def _settings(self, params: dict, space: list[Param]) -> dict:
        """A trial's stored parameters as settings (choices are stored as their JSON text)."""
        kinds = {p.key: p for p in space}
        return in_epochs({k: json.loads(v) if kinds.get(k) is not None and kinds[k].choices else v
                          for k, v in params.items()}, self.epochs)

    def space_of(self, method: str, task: Task) -> list[Param]:
        return at_fixed_epochs(override(get_method(method).cls.search_space(task), (self.space or {}).get(method)),
                               self.epochs)

    # ---- the three stages -------------------------------------------------------------------------
    def run(self) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.out.mkdir(parents=True, exist_ok=True)
        with owned(self.out):
            return self._stages()

    def _stages(self) -> dict:
        import optuna

        mend_journal(self.out / JOURNAL)
        self.storage = open_storage(self.out / JOURNAL)
        identity = task_identity(self, self.storage)
        probe = self._run("probe", self.methods[0], TRIAL_SEED, {})
        prepare_demos([probe])
        task = self.task()
        spaces = {m: self.space_of(m, task) for m in self.methods}
        self.plan()
        studies = {}
        for i, m in enumerate(self.methods):
            study = optuna.create_study(study_name=m, storage=self.storage, direction="maximize", load_if_exists=True)
            if "task" not in study.user_attrs:
                study.set_user_attr("task", identity)
                study.set_user_attr("pruner", self.pruner)
            made_with = study.user_attrs.get("pruner", "median")  # (journals from before the choice: median)
            if made_with != self.pruner:
                raise BMILError(f"{self.out} holds trials pruned by --pruner {made_with}: give --pruner {made_with} "
                                "to go on with them, or another --out.")
            # Seeded by the trials already there: a resumed tune's sampler must not replay its first draws.
            study.sampler = make_sampler(self.sampler, hash((self.seed, i, len(study.trials))) % 2**31)
            studies[m] = study
        self._busy: list[str] = []  # trials whose run folder another process holds (Ray; locally a tune waits)
        self._trials(studies, spaces)
        if self._busy:
            raise BMILError(f"bmil tune: {', '.join(self._busy)} run in another process (their run folders are "
                            "locked, e.g. by the fits of a tune that was killed); nothing was chosen or written. "
                            "Rerun this command once they have ended.")
        chosen = self._finalists(studies, spaces)
        final = self._final(chosen) if self.final_seeds else {}
        summary = self._write(studies, spaces, chosen, final)
        shutil.rmtree(self.out / MODEL_CACHE, ignore_errors=True)  # its fits are done: their models' disk back
        return summary

    def plan(self) -> None:
        """Before the work: the fits left to run and their core-hours (``bmil.tuning.plan``)."""
        print_plan(self)

    def task(self) -> Task:
        domain = get_domain(self.env)
        demos = self.base["model"]["init_args"]["demos"]
        path = demos["path"] or default_demo_path(domain.name, demos["num"], demos["seed"], demos["stop_on_success"])
        episodes = read_demos(path, domain, demos["num"])[0]["episode"]
        return Task(domain.horizon, int(episodes.bincount().min()), int(self.base["trainer"]["max_epochs"]),
                    int(self.base["validation"]["every_n_epochs"]))

    def _trial_run(self, method: str, study, number: int, settings: dict, storage: str) -> Run:
        report = ("--trial.storage", storage, "--trial.study", study.study_name, "--trial.number", str(number),
                  "--trial.pruner", self.pruner, "--trial.first_epoch", str(fidelity.first_pruned_epoch(self.epochs, self._every)))
        fidelity_args = ("--validation.after_epoch", str(self.unpruned_epochs(settings)),
                         "--validation.episodes", str(self.trial_episodes))
        return self._run(_trial_label(method, number), method, TRIAL_SEED, settings,
                         (*NO_TEST, *report, *fidelity_args), "trial")

    def unpruned_epochs(self, settings: dict) -> int:
        """The epochs whose checks a trial with ``settings`` skips (``fidelity``)."""
        return fidelity.unpruned_epochs(self.pruner, self._epochs_of(settings), self.epochs, self._every)

    def unscored_epochs(self, settings: dict) -> int:
        """The epochs whose checks a finalist with ``settings`` skips (``fidelity``)."""
        return fidelity.unscored_epochs(self._epochs_of(settings), self._every)

    def _epochs_of(self, settings: dict) -> int:
        return settings.get("trainer.max_epochs", self.epochs)

    @property
    def _every(self) -> int:
        return int(self.base["validation"]["every_n_epochs"])

    def _trials(self, studies: dict, spaces: dict) -> None:
        """Ask, run and tell until every method has ``trials`` finished trials; trials left running by
        a killed tune run again first (a fit resumes from its checkpoint, a finished one is read)."""
        from optuna.trial import TrialState

        pending = {}
        limit = {m: min(self.trials, grid_size(spaces[m])) if self.sampler == "grid" else self.trials
                 for m in self.methods}
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        queue = [(m, t.number, self._settings(t.params, spaces[m])) for m, s in studies.items()
                 for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

        def asked(method: str) -> int:
            return sum(t.state in finished or t.state == TrialState.RUNNING for t in studies[method].trials)

        # The storage outlives the executor: a stopped tune's fits may report until they are cancelled.
        with serve_storage(self.storage, self.out / JOURNAL, self.executor) as storage, \
                make_executor(self.executor, self.jobs, self.ray_address, die_with_driver=True,
                              model_cache=self.out / MODEL_CACHE) as executor:
            while True:
                while len(pending) < self.jobs:
                    if queue:
                        method, number, settings = queue.pop(0)
                    else:
                        # The method with the fewest trials: a tune stopped early has some of every method.
                        open_methods = [m for m in self.methods if asked(m) < limit[m]]
                        if not open_methods:
                            break
                        method = min(open_methods, key=asked)
                        trial = studies[method].ask()
                        number = trial.number
                        try:
                            settings = suggest(trial, spaces[method], self.epochs, grid=self.sampler == "grid")
                        except ValueError as e:  # Optuna: a choice list other than the study's
                            studies[method].tell(number, state=TrialState.FAIL)
                            raise BMILError(f"{self.out} holds a study of {method} with another search space ({e}); "
                                            "give another --out, or the same config and --space as before.") from None
                    run = self._trial_run(method, studies[method], number, settings, storage)
                    try:
                        pending[executor.submit(self.out, run)] = (method, number, run)
                    except BMILError as e:  # its settings do not parse: a failed trial, and the tune goes on
                        studies[method].tell(number, state=TrialState.FAIL)
                        print(f"{method} trial {number}: failed ({e})", flush=True)
                if not pending:
                    return
                done = executor.wait_any(pending)
                method, number, run = pending.pop(done)
                self._tell(studies[method], number, run, done.result())

    def _tell(self, study, number: int, run: Run, result: dict) -> None:
        from optuna.trial import TrialState

        folder = run.folder(self.out)
        if result.get("failed") and result["error"].startswith("skipped"):
            print(f"{study.study_name} trial {number}: {result['error']}; it stays to run", flush=True)
            self._busy.append(f"{study.study_name} trial {number}")
        elif result.get("failed") or result.get("validation_late") is None:
            study.tell(number, state=TrialState.FAIL)
            result.setdefault("error", "no validation check: its epochs ended before the first")
            print(f"{study.study_name} trial {number}: failed ({result['error']})", flush=True)
        elif (pruned := folder.pruned()) is not None:
            study.tell(number, state=TrialState.PRUNED)
            print(f"{study.study_name} trial {number}: pruned at epoch {pruned['epoch']} (validation "
                  f"{100 * pruned['rate']:.1f}%) after {result['seconds']:.0f} s", flush=True)
        else:
            study.tell(number, result["validation_late"])
            best = study.best_trial
            print(f"{study.study_name} trial {number}: validation {100 * result['validation_late']:.1f}% in "
                  f"{result['seconds']:.0f} s (best so far: trial {best.number}, {100 * best.value:.1f}%)", flush=True)

    def _finalists(self, studies: dict, spaces: dict) -> dict:
        """Per method, the best trials and the defaults trained again on fresh seeds and more
        validation starts, every method's at once; the best mean is chosen. The defaults compete, so
        that a tuned setting replaces them only where fresh runs agree (a method with no finished
        trial keeps them). Without finalists (``finalists`` or ``finalist_seeds`` 0), the best trial."""
        from optuna.trial import TrialState

        candidates = {}  # method: [(trial number or None for the defaults, settings, trial score)]
        for m, study in studies.items():
            complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
            candidates[m] = [(t.number, self._settings(t.params, spaces[m]), t.value) for t in complete[: max(1, self.finalists)]]
        if self.finalists == 0 or self.finalist_seeds == 0:
            for m, c in candidates.items():
                if not c:
                    raise BMILError(f"bmil tune: no trial of {m} finished (all pruned or failed; see the trials' "
                                    f"fit.log under {self.out / 'runs'}); give more --trials, or finalists to "
                                    "let the defaults stand.")
            return {m: _choice(*c[0], []) for m, c in candidates.items()}
        for m, c in candidates.items():
            if not c:
                print(f"{m}: no trial finished (all pruned or failed); its defaults stand alone", flush=True)
            c.append((None, self.defaults(m), None))
        seeds = [TRIAL_SEED + 1 + i for i in range(self.finalist_seeds)]
        more = ("--validation.episodes", str(self.finalist_episodes), *NO_TEST)
        runs = {(m, number, s): self._run(f"{m} finalist {self._defaults_name(m) if number is None else number}",
                                           m, s, settings, (*more, "--validation.after_epoch",
                                                            str(self.unscored_epochs(settings))), "finalist")
                for m, c in candidates.items() for number, settings, _ in c for s in seeds}
        results = self._execute(list(runs.values()))
        failed = [r for r in results.values() if r.get("failed") or r.get("validation_late") is None]
        if failed:
            raise BMILError(f"bmil tune: the finalist run {failed[0]['run_id']} failed: "
                            f"{failed[0].get('error', 'no validation check')}")
        chosen = {}
        for m, c in candidates.items():
            scored = []
            for number, settings, trial_score in c:
                values = [results[runs[(m, number, s)].run_id]["validation_late"] for s in seeds]
                score = sum(values) / len(values)
                scored.append((score, number, settings, trial_score))
                name = "the defaults" if number is None else f"trial {number} (its trial's score {100 * trial_score:.1f}%)"
                print(f"{m} finalist {name}: validation {100 * score:.1f}% over seeds "
                      f"{', '.join(map(str, seeds))} on {self.finalist_episodes} starts", flush=True)
            # The best mean; on a tie the defaults (listed last), then the earlier trial.
            score, number, settings, trial_score = max(scored, key=lambda x: (x[0], x[1] is None, -(x[1] or 0)))
            chosen[m] = {**_choice(number, settings, trial_score, seeds, score),
                         "finalists": [{"trial": n, "settings": st, "score": sc, "trial_score": ts} for sc, n, st, ts in scored]}
        return chosen

    def _final(self, chosen: dict) -> dict:
        """The chosen settings and the defaults of every method, tested on seeds 0..final_seeds-1
        (where the defaults were chosen, their runs are the tuned ones too)."""
        runs = {(m, kind, s): self._final_run(m, kind, s, chosen[m])
                for m in self.methods for kind in ("tuned", "defaults") for s in range(self.final_seeds)}
        results = self._execute(list(runs.values()))
        final = {}
        for (m, kind, s), run in runs.items():
            result = results[run.run_id]
            if result.get("failed"):
                raise BMILError(f"bmil tune: the final {kind} run of {m}, seed {s}, failed: {result['error']}")
            score = result.get("best_robustness", result["robustness"])
            final.setdefault(m, {}).setdefault(kind, []).append({"seed": s, "test": score, "run": run.run_id,
                                                                  "validation": result.get("best_validation")})
        return final

    def _final_run(self, method: str, kind: str, seed: int, choice: dict) -> Run:
        if kind == "defaults" or choice["trial"] is None:
            label, settings = f"{method} {self._defaults_name(method)}", self.defaults(method)
        else:
            label, settings = f"{method} tuned trial {choice['trial']}", choice["settings"]
        return self._run(label, method, seed, settings, FINAL_TEST_ONLY, stage="final")

    def defaults(self, method: str) -> dict:
        """What the tuned settings are compared with: the config's own, or ``reference`` settings
        over it (the search study's current family settings)."""
        return dict(self.reference.get(method, {}))

    def _defaults_name(self, method: str) -> str:
        """The defaults' runs are named by their settings, so that other reference settings in the
        same folder are new runs, not a clash with the old ones."""
        given = self.defaults(method)
        return f"defaults {hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:8]}" if given else "defaults"

    def _pruning_saved(self, method: str, study, space: list[Param]) -> dict:
        """What pruning saved: each pruned trial's time, against that time stretched to all its epochs."""
        from optuna.trial import TrialState

        spent = full = 0.0
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
            folder = _trial_folder(self, method, t.number)
            if not folder.is_done():
                continue
            seconds = folder.result(f"delete {folder} to run the trial again")["seconds"]
            epoch = folder.pruned()["epoch"]
            epochs = self._settings(t.params, space).get("trainer.max_epochs", self.epochs)
            spent, full = spent + seconds, full + seconds * epochs / max(1, epoch)
        return {"pruned_core_hours": spent / 3600, "to_the_end_core_hours": full / 3600,
                "saved_core_hours": (full - spent) / 3600}

    def _execute(self, runs: list[Run]) -> dict[str, dict]:
        unique = {}
        for run in runs:  # a run asked for twice (the defaults chosen: tuned and defaults alike) is run once
            if run.run_id in unique and unique[run.run_id].signature != run.signature:
                raise BMILError(f"bmil tune: two runs named {run.run_id} with other settings")
            unique[run.run_id] = run
        with make_executor(self.executor, self.jobs, self.ray_address, die_with_driver=True,
                           model_cache=self.out / MODEL_CACHE) as executor:
            futures = {executor.submit(self.out, r): r for r in unique.values()}
            return {futures[f].run_id: f.result() for f in futures}

    # ---- outputs --------------------------------------------------------------------------------
    def _write(self, studies: dict, spaces: dict, chosen: dict, final: dict) -> dict:
        for method, choice in chosen.items():
            outputs.write_overlay(self.out / f"tuned_{method}.yaml", get_method(method), choice, tuned_task(self.base))
        winner = max(chosen, key=lambda m: chosen[m]["score"])  # on validation starts, not the test
        if final:
            best = self._final_run(winner, "tuned", 0, chosen[winner]).folder(self.out)
            export_policy(str(best.policy_ckpt()), str(self.out / "policy.pt"))
        summary = {"winner": winner, "chosen": chosen, "final": final,
                   "trials": {m: outputs.counts(s) for m, s in studies.items()},
                   "pruning": {m: self._pruning_saved(m, s, spaces[m]) for m, s in studies.items()},
                   "core_hours": outputs.core_hours(self.out), "skipped_checks": outputs.skipped_checks(self.out)}
        write_record(self.out / "summary.json", summary, indent=1)
        table = outputs.table(summary)
        write_text(self.out / "table.md", table)
        figures = [*outputs.figures(studies, self.out),
                   *([outputs.validation_against_test(final, self.out)] if final else [])]
        outputs.tensorboard(studies, figures, self.out)
        print(table)
        exported = f"; its policy: {self.out / 'policy.pt'}" if final else " (no final test, no policy exported)"
        print(f"winner (on validation starts): {winner}{exported}; overlays: "
              + ", ".join(str(self.out / f"tuned_{m}.yaml") for m in chosen))
        return summary


MODEL_CACHE = "model_cache"  # in --out: the dynamics models every trial of a seed trains alike (bmil.methods.model_cache)


def _trial_folder(tuner: "Tuner", method: str, number: int) -> Path:
    return Run(tuner.domain, _trial_label(method, number), TRIAL_SEED, ()).folder(tuner.out)


def _choice(trial: Optional[int], settings: dict, trial_score: Optional[float], seeds: list[int],
            score: Optional[float] = None) -> dict:
    """A method's chosen settings: a trial's, or the defaults' (trial None)."""
    return {"trial": trial, "settings": settings, "score": trial_score if score is None else score,
            "trial_score": trial_score, "seeds": seeds}


def _trial_label(method: str, number: int) -> str:
    return f"{method} trial {number}"
