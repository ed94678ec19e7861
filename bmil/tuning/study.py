"""``bmil tune``'s driver: Optuna asks for settings, the study runner's executor trains each trial as
a ``bmil fit`` (the same seam ``bmil reproduce`` uses), and the trial's validation score is told back.

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

import contextlib
import hashlib
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from bmil.errors import BMILError
from bmil.evaluation import usable_cores
from bmil.executors import make_executor
from bmil.run_record import write_record, write_text
from bmil.studies.catalog import Run
from bmil.studies.report import t_interval
from bmil.studies.runner import _prepare_demos, run_dir, signature
from bmil.tuning.space import Param, Task, as_overrides, grid_size, override, suggest

METHODS = {"bmil": "BMIL", "bc": "BC", "noise_bc": "NoiseBC", "ccil": "CCIL"}
NO_TEST = ("--robustness.every_n_epochs", "0", "--robustness.final_episodes", "0")  # trials never see test starts
JOURNAL = "optuna.journal"


def open_storage(address):
    """The tune's Optuna storage: its journal file, or ``grpc://HOST:PORT``, the driver's journal served
    to fits on other machines (``serve_storage``)."""
    from optuna.storages import GrpcStorageProxy, JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if str(address).startswith("grpc://"):
        host, port = str(address).removeprefix("grpc://").rsplit(":", 1)
        return GrpcStorageProxy(host=host, port=int(port))
    return JournalStorage(JournalFileBackend(str(address)))


@contextlib.contextmanager
def serve_storage(storage, journal: Path, executor: str):
    """Where a trial's fit reports to (``--trial.storage``): on this machine, the journal file; on a
    Ray cluster, which shares no folder, Optuna's gRPC proxy of the journal, served from here for the
    tune's duration (on a free port; the nodes must reach this machine)."""
    if executor != "ray":
        yield str(journal)
        return
    import grpc
    from optuna.storages._grpc.auto_generated.api_pb2_grpc import add_StorageServiceServicer_to_server
    from optuna.storages._grpc.servicer import OptunaStorageProxyService
    from ray.util import get_node_ip_address

    # Optuna's proxy service in a server of our own (its public run_grpc_proxy_server never returns),
    # on port 0: the system binds a free port, with no race; SO_REUSEPORT off, so none shares it.
    threads = ThreadPoolExecutor(10)
    server = grpc.server(threads, options=[("grpc.so_reuseport", 0)])
    add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    port = server.add_insecure_port("0.0.0.0:0")
    server.start()
    try:
        yield f"grpc://{get_node_ip_address()}:{port}"
    finally:
        server.stop(grace=None)
        threads.shutdown()


def make_pruner(max_epochs: Optional[int]):
    """Median pruning once 4 trials have finished, never at a check in the first quarter of training
    (Optuna prunes from step ``n_warmup_steps`` on; the steps are epochs)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=max(0, (max_epochs or 0) // 4) + 1)


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
    finalist_episodes: int = 500
    final_seeds: int = 3
    space: Optional[dict] = None  # the user's changes, per method
    sampler: str = "tpe"  # or "grid": every distinct setting of the parameters' grid values
    reference: dict = field(default_factory=dict)  # per method, settings over the config for its defaults
    executor: str = "local"  # or "ray": the fits as tasks on a Ray cluster
    ray_address: Optional[str] = None

    def __post_init__(self):
        from bmil.lightning_cli import fit_settings

        self.out = Path(self.out).resolve()  # the fits report to its journal from their own processes
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise BMILError(f"--methods: unknown {', '.join(unknown)}; bmil tune searches {', '.join(METHODS)}.")
        self.base = fit_settings(self._config_args())
        validation = self.base["validation"]
        if not validation["every_n_epochs"]:
            raise BMILError("bmil tune scores trials on validation starts: the config must validate "
                            "(validation: {every_n_epochs: 10, episodes: 200}).")
        if validation["seed"] == self.base["robustness"]["seed"]:
            raise BMILError("validation.seed must differ from robustness.seed: the trials are scored on "
                            "validation starts, never on the test's.")
        epochs = self.base["trainer"]["max_epochs"]
        if epochs is None or epochs < 1:
            raise BMILError("bmil tune needs a finite trainer.max_epochs in the config (the trials' budget).")
        self.env = self.base["model"]["init_args"]["env"]
        self.domain = _domain_name(self.env)
        cores = usable_cores()
        if self.executor == "local" and self.jobs > cores:  # each fit takes one core (one torch thread, evaluations in process)
            raise BMILError(f"--jobs {self.jobs}: this process may use {cores} cores; give at most {cores}.")

    # ---- runs -----------------------------------------------------------------------------------
    def _config_args(self) -> list[str]:
        return [arg for c in self.configs for arg in ("--config", c)]

    def _run(self, label: str, method: str, seed: int, settings: dict, extra: tuple = ()) -> Run:
        """A fit of ``method`` on the user's config with ``settings`` over it."""
        switch = ("--model", f"bmil.methods.{METHODS[method]}")
        return Run(self.domain, label, seed, tuple(self.configs), (*switch, *as_overrides(settings)),
                   family=METHODS[method], extra=tuple(extra))

    def space_of(self, method: str, task: Task) -> list[Param]:
        from bmil import methods as registry

        return override(getattr(registry, METHODS[method]).search_space(task), (self.space or {}).get(method))

    # ---- the three stages -------------------------------------------------------------------------
    def run(self) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.out.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.out / JOURNAL)
        probe = self._run("probe", self.methods[0], TRIAL_SEED, {})
        _prepare_demos([probe])
        task = self.task()
        spaces = {m: self.space_of(m, task) for m in self.methods}
        self.plan()
        studies = {}
        for i, m in enumerate(self.methods):
            study = optuna.create_study(study_name=m, storage=self.storage, direction="maximize", load_if_exists=True)
            # Seeded by the trials already there: a resumed tune's sampler must not replay its first draws.
            study.sampler = make_sampler(self.sampler, hash((self.seed, i, len(study.trials))) % 2**31)
            studies[m] = study
        self._trials(studies, spaces)
        chosen = self._finalists(studies, spaces)
        final = self._final(chosen) if self.final_seeds else {}
        return self._write(studies, spaces, chosen, final)

    def plan(self) -> None:
        """Before the work: the fits left to run and their core-hours, estimated per method by ``bmil
        check`` (two timed epochs and two batches of episodes of that method on the config)."""
        finalists = (self.finalists + 1) * self.finalist_seeds if self.finalists else 0  # the defaults compete
        done = self._done()
        left, minutes, per_trial = [0, 0, 0], 0.0, {}
        for method in self.methods:
            todo = [max(0, n - d) for n, d in zip((self.trials, finalists, 2 * self.final_seeds), done[method])]
            if any(todo):  # (a method with nothing left is not timed)
                costs = self._minutes(method)
                minutes += sum(n * c for n, c in zip(todo, costs))
                left = [a + b for a, b in zip(left, todo)]
                per_trial[method] = costs[0]
        finished = [sum(d[i] for d in done.values()) for i in range(3)]
        done_text = f" to do ({finished[0]}, {finished[1]} and {finished[2]} done)" if any(finished) else ""
        each = ", ".join(f"{METHODS[x]} {c:.1f}" for x, c in per_trial.items()) or "none left"
        hours = minutes / 60
        print(f"plan: {left[0]} trials, {left[1]} finalist runs and {left[2]} final runs{done_text} of "
              f"{', '.join(METHODS[x] for x in self.methods)} on {self.domain}; about {hours:.1f} core-hours before "
              f"pruning (core-minutes a trial, by bmil check: {each}); {self.jobs} fits at once on "
              f"{usable_cores()} usable cores, about {hours / self.jobs:.1f} hours", flush=True)

    def _minutes(self, method: str) -> tuple[float, float, float]:
        """Core-minutes of one trial, one finalist run and one final run of ``method`` at its defaults,
        from ``bmil check``."""
        import subprocess
        import sys
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "check.json"
            switch = ["--model", f"bmil.methods.{METHODS[method]}"]
            done = subprocess.run([sys.executable, "-m", "bmil.cli", "check", *self._config_args(), *switch,
                                   "--json_out", str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
                raise BMILError(f"the config with {METHODS[method]} does not pass bmil check: {last}")
            facts = json.loads(out.read_text())
        estimate, budgets = facts["estimate"], facts["evaluation"]
        test = budgets["robustness"].get("final_total", 0)
        final = estimate["core_minutes"]
        trial = final - test * estimate["episode_seconds"] / 60
        extra = self.finalist_episodes - budgets["validation"]["episodes"]
        finalist = trial + budgets["validation"]["checks"] * max(0, extra) * estimate["episode_seconds"] / 60
        return trial, finalist, final

    def _done(self) -> dict[str, tuple[int, int, int]]:
        """Per method, its trials, finalist runs and final runs already finished in ``out`` (a resumed
        tune)."""
        trials = dict.fromkeys(self.methods, 0)
        if (self.out / JOURNAL).is_file():
            import optuna

            storage = open_storage(self.out / JOURNAL)
            for summary in optuna.get_all_study_summaries(storage):
                if summary.study_name in trials:
                    finished = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
                    trials[summary.study_name] = min(self.trials, sum(t.state.is_finished() for t in finished))
        labels = [p.parents[1].name.split("__")[1] for p in (self.out / "runs").glob("*/version_0/result.json")]
        done = {}
        for method in self.methods:
            runs = [r for r in labels if r.startswith(f"{method}_")]
            finalists = sum("_finalist_" in r for r in runs)
            final = sum("_finalist_" not in r and ("_tuned_" in r or r.endswith("_defaults")) for r in runs)
            done[method] = (trials[method], finalists, final)
        return done

    def task(self) -> Task:
        from bmil.demo_formats import read_demos
        from bmil.demos import default_demo_path
        from bmil.domains import get_domain

        domain = get_domain(self.env)
        demos = self.base["model"]["init_args"]["demos"]
        path = demos["path"] or default_demo_path(domain.name, demos["num"], demos["seed"], demos["stop_on_success"])
        episodes = read_demos(path, domain, demos["num"])[0]["episode"]
        return Task(domain.horizon, int(episodes.bincount().min()), int(self.base["trainer"]["max_epochs"]),
                    int(self.base["validation"]["every_n_epochs"]))

    def _trial_run(self, method: str, study, number: int, settings: dict, storage: str) -> Run:
        report = ("--trial.storage", storage, "--trial.study", study.study_name,
                  "--trial.number", str(number))
        return self._run(_trial_label(method, number), method, TRIAL_SEED, settings, (*NO_TEST, *report))

    def _trials(self, studies: dict, spaces: dict) -> None:
        """Ask, run and tell until every method has ``trials`` finished trials; trials left running by
        a killed tune run again first (a fit resumes from its checkpoint, a finished one is read)."""
        from optuna.trial import TrialState

        pending = {}
        limit = {m: min(self.trials, grid_size(spaces[m])) if self.sampler == "grid" else self.trials
                 for m in self.methods}
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        queue = [(m, t.number, _settings(t.params, spaces[m])) for m, s in studies.items()
                 for t in s.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

        def asked(method: str) -> int:
            return sum(t.state in finished or t.state == TrialState.RUNNING for t in studies[method].trials)

        # The storage outlives the executor: a stopped tune's fits may report until they are cancelled.
        with serve_storage(self.storage, self.out / JOURNAL, self.executor) as storage, \
                make_executor(self.executor, self.jobs, self.ray_address) as executor:
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
                            settings = suggest(trial, spaces[method], grid=self.sampler == "grid")
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

        folder = run_dir(self.out, run)
        if result.get("failed") and result["error"].startswith("skipped"):
            print(f"{study.study_name} trial {number}: {result['error']}; it stays to run", flush=True)
        elif result.get("failed") or result.get("validation_late") is None:
            study.tell(number, state=TrialState.FAIL)
            result.setdefault("error", "no validation check: its epochs ended before the first")
            print(f"{study.study_name} trial {number}: failed ({result['error']})", flush=True)
        elif (folder / "pruned.json").is_file():
            pruned = json.loads((folder / "pruned.json").read_text())
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
            candidates[m] = [(t.number, _settings(t.params, spaces[m]), t.value) for t in complete[: max(1, self.finalists)]]
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
                                           m, s, settings, more)
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
            return self._run(f"{method} {self._defaults_name(method)}", method, seed, self.defaults(method))
        return self._run(f"{method} tuned trial {choice['trial']}", method, seed, choice["settings"])

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
            if not (folder / "result.json").is_file():
                continue
            seconds = json.loads((folder / "result.json").read_text())["seconds"]
            epoch = json.loads((folder / "pruned.json").read_text())["epoch"]
            epochs = _settings(t.params, space).get("trainer.max_epochs", self.base["trainer"]["max_epochs"])
            spent, full = spent + seconds, full + seconds * epochs / max(1, epoch)
        return {"pruned_core_hours": spent / 3600, "to_the_end_core_hours": full / 3600,
                "saved_core_hours": (full - spent) / 3600}

    def _execute(self, runs: list[Run]) -> dict[str, dict]:
        unique = {}
        for run in runs:  # a run asked for twice (the defaults chosen: tuned and defaults alike) is run once
            if run.run_id in unique and signature(unique[run.run_id]) != signature(run):
                raise BMILError(f"bmil tune: two runs named {run.run_id} with other settings")
            unique[run.run_id] = run
        with make_executor(self.executor, self.jobs, self.ray_address) as executor:
            futures = {executor.submit(self.out, r): r for r in unique.values()}
            return {futures[f].run_id: f.result() for f in futures}

    # ---- outputs --------------------------------------------------------------------------------
    def _write(self, studies: dict, spaces: dict, chosen: dict, final: dict) -> dict:
        for method, choice in chosen.items():
            _write_overlay(self.out / f"tuned_{method}.yaml", method, choice)
        winner = max(chosen, key=lambda m: chosen[m]["score"])  # on validation starts, not the test
        if final:
            from bmil.export import export_policy

            best = run_dir(self.out, self._final_run(winner, "tuned", 0, chosen[winner]))
            ckpt = best / "checkpoints" / ("best.ckpt" if (best / "checkpoints" / "best.ckpt").is_file() else "last.ckpt")
            export_policy(str(ckpt), str(self.out / "policy.pt"))
        summary = {"winner": winner, "chosen": chosen, "final": final,
                   "trials": {m: _counts(s) for m, s in studies.items()},
                   "pruning": {m: self._pruning_saved(m, s, spaces[m]) for m, s in studies.items()}}
        write_record(self.out / "summary.json", summary, indent=1)
        table = _table(summary)
        write_text(self.out / "table.md", table)
        figures = [*_figures(studies, self.out), *([_validation_against_test(final, self.out)] if final else [])]
        _tensorboard(studies, figures, self.out)
        print(table)
        exported = f"; its policy: {self.out / 'policy.pt'}" if final else " (no final test, no policy exported)"
        print(f"winner (on validation starts): {winner}{exported}; overlays: "
              + ", ".join(str(self.out / f"tuned_{m}.yaml") for m in chosen))
        return summary


def _trial_folder(tuner: "Tuner", method: str, number: int) -> Path:
    return run_dir(tuner.out, Run(tuner.domain, _trial_label(method, number), TRIAL_SEED, ()))


def _choice(trial: Optional[int], settings: dict, trial_score: Optional[float], seeds: list[int],
            score: Optional[float] = None) -> dict:
    """A method's chosen settings: a trial's, or the defaults' (trial None)."""
    return {"trial": trial, "settings": settings, "score": trial_score if score is None else score,
            "trial_score": trial_score, "seeds": seeds}


def _trial_label(method: str, number: int) -> str:
    return f"{method} trial {number}"


def _domain_name(env) -> str:
    from bmil.domains import get_domain

    return get_domain(env).name


def _settings(params: dict, space: list[Param]) -> dict:
    """A trial's stored parameters as settings (choices are stored as their JSON text)."""
    kinds = {p.key: p for p in space}
    return {k: json.loads(v) if kinds.get(k) is not None and kinds[k].choices else v for k, v in params.items()}


def _write_overlay(path: Path, method: str, choice: dict) -> None:
    """``tuned_<method>.yaml``: the method and its chosen settings, layered over the user's config."""
    nested: dict = {"model": {"class_path": f"bmil.methods.{METHODS[method]}", "init_args": {}}}
    for key, value in choice["settings"].items():
        head, *rest = key.split(".")
        node = nested["model"]["init_args"] if head == "model" else nested.setdefault(head, {})
        for name in rest[:-1]:
            node = node.setdefault(name, {})
        node[rest[-1]] = value
    source = "the defaults: no trial beat them on fresh seeds" if choice["trial"] is None else f"trial {choice['trial']}"
    header = (f"# bmil tune: {METHODS[method]}'s settings chosen on validation starts ({source}; "
              f"validation {100 * choice['score']:.1f}%).\n# Use: bmil fit --config <your config> --config {path.name}\n")
    write_text(path, header + yaml.safe_dump(nested, sort_keys=False))


def _counts(study) -> dict:
    from optuna.trial import TrialState

    return {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}


def _mean_ci(values: list[float]) -> str:
    """Mean ± the 95% t-interval's half-width over seeds, in %."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, half = t_interval(values)
    return f"{100 * mean:.1f} ± {100 * half:.1f}" if len(values) > 1 else f"{100 * mean:.1f}"


def _table(summary: dict) -> str:
    rows = ["| method | trials (done, pruned, failed) | chosen trial | validation | test: tuned | test: defaults |",
            "| --- | --- | --- | --- | --- | --- |"]
    for method, choice in summary["chosen"].items():
        counts, final = summary["trials"][method], summary["final"].get(method, {})
        mark = " (winner)" if method == summary["winner"] else ""
        trial = "defaults" if choice["trial"] is None else choice["trial"]
        rows.append(f"| {METHODS[method]}{mark} | {counts['complete']}, {counts['pruned']}, {counts['fail']} | "
                    f"{trial} | {100 * choice['score']:.1f} | {_mean_ci([r['test'] for r in final.get('tuned', [])])} | "
                    f"{_mean_ci([r['test'] for r in final.get('defaults', [])])} |")
    seeds = len(next(iter(summary["final"].values()), {}).get("tuned", []))
    saved = [(m, p) for m, p in summary["pruning"].items() if p["to_the_end_core_hours"]]
    rows += [""] + [f"Pruning ({METHODS[m]}): the pruned trials took {p['pruned_core_hours']:.2f} core-hours; run to "
                    f"the end they would have taken about {p['to_the_end_core_hours']:.2f} (saved "
                    f"{p['saved_core_hours']:.2f})." for m, p in saved]
    test = (f"Robustness (%) on the test starts, the best policy by validation, mean ± 95% t-interval over {seeds} seeds"
            if seeds else "No final test (final seeds 0)")
    return f"{test}; validation: the chosen settings' score on validation starts.\n\n" + "\n".join(rows) + "\n"


def _validation_against_test(final: dict, out: Path) -> Path:
    """Every final run's best policy: its validation rate against its test robustness."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for method, kinds in final.items():
        for kind, marker in (("tuned", "o"), ("defaults", "x")):
            points = [(r["validation"], r["test"]) for r in kinds[kind] if r["validation"] is not None]
            if points:
                ax.scatter(*zip(*points), marker=marker, label=f"{METHODS[method]} {kind}")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="validation (best check)", ylabel="test robustness", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "validation_vs_test.png")
    plt.close(fig)
    return out / "validation_vs_test.png"


def _tensorboard(studies: dict, figures: list[Path], out: Path) -> None:
    """``tensorboard --logdir <out>/tensorboard``: every finished trial's score by trial number, and
    the figures as images."""
    import matplotlib.image
    from optuna.trial import TrialState
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        for method, study in studies.items():
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                writer.add_scalar(f"tune/{method}/validation", t.value, t.number)
        for path in figures:
            image = matplotlib.image.imread(path)[..., :3]
            writer.add_image(f"tune/{path.stem}", image, 0, dataformats="HWC")


def _figures(studies: dict, out: Path) -> list[Path]:
    """Optimization history and parameter importances per method (PNG)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as views
    from optuna.trial import TrialState

    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib views experimental
        for method, study in studies.items():
            views.plot_optimization_history(study)
            paths.append(out / f"history_{method}.png")
            plt.gcf().savefig(paths[-1], bbox_inches="tight")
            plt.close("all")
            if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) > 1:
                views.plot_param_importances(study)
                paths.append(out / f"importances_{method}.png")
                plt.gcf().savefig(paths[-1], bbox_inches="tight")
                plt.close("all")
    return paths

