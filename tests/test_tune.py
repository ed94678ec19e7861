"""``bmil tune`` (issue 55): search spaces as data, Optuna trials on validation starts only, resume,
failed trials, and overlays that reproduce a trial's settings."""

import json
import math
import re
from concurrent.futures import Future
from pathlib import Path

import optuna
import pytest
import yaml

from bmil.cli import main
from probes import use_instant_fits

from bmil.errors import BMILError
from bmil.lightning_cli import fit_settings
from bmil.methods import BC, BMIL, CCIL, NoiseBC
from bmil.tuning.space import Param, Task, as_overrides, override, suggest
from bmil.tuning.storage import JOURNAL, open_storage

TASK = Task(horizon=50, shortest_demo=50, epochs=200)


@pytest.fixture
def task_folder(user_folder):
    """The user's folder, tiny.yaml at 4 epochs: the space's epochs are then 2, 4 and 8."""
    tiny = yaml.safe_load((user_folder / "tiny.yaml").read_text())
    (user_folder / "tiny.yaml").write_text(yaml.safe_dump({**tiny, "trainer": {"max_epochs": 4}}))
    return user_folder


def _tune(*args) -> None:
    main(["tune", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--jobs", "2",
          "--finalists", "0", "--final_seeds", "1", "--out", "tune/t", *args])


def _trials(folder: Path, method: str) -> list:
    return optuna.load_study(study_name=method, storage=open_storage(folder / JOURNAL)).trials


def test_tune_explains_itself(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = capsys.readouterr().out
    assert "Search each method's settings on validation starts" in out and "--trials" in out and "--space" in out
    assert "--config CONFIG       The task's config file, as for bmil fit" in out


def test_every_method_declares_its_space_as_data():
    keys = {m.__name__: [p.key for p in m.search_space(TASK)] for m in (BMIL, BC, NoiseBC, CCIL)}
    assert keys["BC"] == ["model.policy.lr", "trainer.max_epochs"]
    assert {"model.demo_ratio", "model.traces.length", "model.traces.length_epochs", "model.traces.action_selection",
            "model.traces.selection_coef", "model.traces.demo_bounds_margin"} <= set(keys["BMIL"])
    assert "model.noise.scale" in keys["NoiseBC"] and "model.ccil.lipschitz" in keys["CCIL"]
    lengths = next(p for p in BMIL.search_space(TASK) if p.key == "model.traces.length").choices
    assert max(n for _, n in lengths) == 5  # a tenth of the horizon
    long = next(p for p in BMIL.search_space(Task(600, 600, 200)) if p.key == "model.traces.length").choices
    assert max(n for _, n in long) == 20
    epochs = next(p for p in BC.search_space(TASK) if p.key == "trainer.max_epochs").choices
    assert epochs == (100, 200, 400)


def test_a_space_is_narrowed_overridden_and_dropped_in_yaml():
    space = override(BMIL.search_space(TASK), {"model.demo_ratio": {"low": 0.8, "high": 0.9},
                                                "model.traces.demo_bounds_margin": None,
                                                "model.traces.length": {"choices": [[1, 3]]},
                                                "model.policy.batch_size": {"choices": [64, 128]}})
    params = {p.key: p for p in space}
    assert (params["model.demo_ratio"].low, params["model.demo_ratio"].high) == (0.8, 0.9)
    assert "model.traces.demo_bounds_margin" not in params and params["model.traces.length"].choices == ([1, 3],)
    assert params["model.policy.batch_size"].choices == (64, 128)
    with pytest.raises(BMILError, match="not a parameter to drop"):
        override(space, {"model.no_such": None})
    with pytest.raises(BMILError, match="unknown fields lo"):
        override(space, {"model.demo_ratio": {"lo": 0.1}})
    with pytest.raises(BMILError, match="low 0.9 is above high 0.1"):
        Param("x", 0.9, 0.1)
    with pytest.raises(BMILError, match="the choice 1.0 is given twice"):  # one grid point, not two
        override(space, {"model.policy.batch_size": {"choices": [64, 1, 1.0]}})


def test_conditional_parameters_follow_their_condition():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [suggest(study.ask(), BMIL.search_space(TASK), TASK.epochs) for _ in range(20)]
    for settings in seen:
        assert ("model.traces.selection_coef" in settings) == (settings["model.traces.action_selection"] == "sc")
    assert {s["model.traces.action_selection"] for s in seen} == {"sc", "none"}


def test_a_trace_schedule_is_drawn_over_the_trials_own_epochs():
    """A trial that draws half the config's epochs reaches its longest traces; a space that draws no
    epochs names them as before (the recorded search studies' choices)."""
    from bmil.tuning.space import at_fixed_epochs

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [suggest(study.ask(), BMIL.search_space(TASK), TASK.epochs) for _ in range(30)]
    pairs = {(s["trainer.max_epochs"], tuple(s["model.traces.length_epochs"])) for s in seen}
    assert {(100, (1, 100)), (100, (1, 50)), (100, (20, 100)), (400, (80, 400))} <= pairs
    assert all(end <= epochs for epochs, (_, end) in pairs)
    fixed = at_fixed_epochs(override(BMIL.search_space(TASK), {"trainer.max_epochs": None}), 200)
    assert next(p for p in fixed if p.key == "model.traces.length_epochs").choices == ([1, 200], [1, 100], [40, 200])


def test_the_table_gives_mean_and_interval_half_width():
    from bmil.tuning.outputs import mean_ci

    assert mean_ci([0.4, 0.5, 0.6]) == "50.0 ± 24.8"  # t(2) 4.303 x 0.1 / sqrt(3)
    assert mean_ci([0.7]) == "70.0" and mean_ci([]) == "-"


def test_a_study_can_grid_the_space():
    from bmil.tuning.space import grid_size
    from bmil.tuning.tuner import make_sampler

    space = override(BC.search_space(TASK), {"model.policy.lr": {"choices": [1e-4, 3e-4]}})
    study = optuna.create_study(sampler=make_sampler("grid", 0))
    seen = set()
    for _ in range(6):
        trial = study.ask()
        settings = suggest(trial, space, TASK.epochs, grid=True)
        seen.add((settings["model.policy.lr"], settings["trainer.max_epochs"]))
        study.tell(trial, 0.0)
    assert seen == {(lr, e) for lr in (1e-4, 3e-4) for e in (100, 200, 400)} and grid_size(space) == 6
    assert Param("x", 0.5, 0.9).grid() == [0.5, 0.7, 0.9] and Param("n", 1, 100, log=True, integer=True).grid() == [1, 10, 100]
    # A conditional parameter takes its values only where its condition holds: 2 x (1 + 3) settings,
    # each once, where the full product (12) would train each "none" setting three times.
    space = [Param("selection", choices=("none", "sc")), Param("coef", 1.0, 100.0, log=True, when={"selection": ["sc"]}),
             Param("lr", choices=(1e-4, 3e-4))]
    study = optuna.create_study(sampler=make_sampler("grid", 1))
    settings = []
    for _ in range(grid_size(space)):
        trial = study.ask()
        settings.append(tuple(sorted(suggest(trial, space, TASK.epochs, grid=True).items())))
        study.tell(trial, 0.0)
    assert grid_size(space) == 8 and len(set(settings)) == 8
    assert sum(dict(s)["selection"] == "none" for s in settings) == 2


def test_the_overlay_reproduces_the_trials_settings(task_folder):
    from bmil.methods import get_method
    from bmil.tuning.outputs import write_overlay

    base = ["--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml"]
    settings = {"model.demo_ratio": 0.7, "model.traces.length": [1, 3], "model.traces.demo_bounds_margin": None,
                "model.policy.lr": 5e-4, "trainer.max_epochs": 8}
    for method, cls in (("bmil", "BMIL"), ("noise_bc", "NoiseBC")):
        chosen = {k: v for k, v in settings.items() if method == "bmil" or k.startswith(("model.policy", "trainer"))}
        if method == "noise_bc":
            chosen["model.noise.scale"] = 0.3
        write_overlay(task_folder / "tuned.yaml", get_method(method), {"trial": 3, "score": 0.5, "settings": chosen},
                      {"env": "pickplace", "demos": None})
        trial = fit_settings([*base, "--model", f"bmil.methods.{cls}", *as_overrides(chosen)])
        layered = fit_settings([*base, "--config", "tuned.yaml"])
        for key in ("model", "trainer"):
            assert layered[key] == trial[key], key


def _epochs(folder: Path) -> int:
    """The epochs a fit of the tune trained (its config as saved)."""
    return yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["max_epochs"]


@pytest.mark.slow
def test_a_tune_scores_trials_on_validation_and_tests_only_at_the_end(task_folder, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # Evaluations no stage reads, in the config: the tune's fits skip them.
    (task_folder / "unread.yaml").write_text(yaml.safe_dump({"training_success": {"every_n_epochs": 2, "episodes": 2},
                                                             "robustness": {"every_n_epochs": 2, "episodes": 2}}))
    _tune("--methods", "bc", "--trials", "2", "--config", "unread.yaml")
    out = task_folder / "tune" / "t"
    assert [t.state.name for t in _trials(out, "bc")] == ["COMPLETE", "COMPLETE"]
    runs = sorted(p.name for p in (out / "runs").iterdir())
    chosen_trial = json.loads((out / "summary.json").read_text())["chosen"]["bc"]["trial"]
    assert runs == ["pickplace__bc_defaults__s0", "pickplace__bc_trial_0__s100", "pickplace__bc_trial_1__s100",
                    f"pickplace__bc_tuned_trial_{chosen_trial}__s0"]
    for name in runs:  # the test starts: the two final runs only, and only their best policy by validation
        folder = out / "runs" / name / "version_0"
        assert (folder / "robustness_best.json").is_file() == name.endswith("__s0"), name
        assert not (folder / "robustness_final.json").is_file()
        checks = [h["epoch"] for h in json.loads((folder / "validation.json").read_text())["history"]]
        # A trial validates only where its pruner may prune (after its first quarter), on half the config's
        # starts; a final run at every check (its best policy may come early), on all of them.
        trial = name.endswith("__s100")
        first = _epochs(folder) // 4 + 1 if trial else 1
        assert checks and checks[0] == first, (name, checks)
        episodes = json.loads((folder / "validation.json").read_text())["history"][0]["episodes"]
        assert episodes == (2 if trial else 4), (name, episodes)
        tags = EventAccumulator(str(folder)).Reload().Tags()["scalars"]
        assert "eval/training_success" not in tags and "eval/robustness" not in tags, (name, tags)
    printed = capsys.readouterr().out
    assert "plan: 2 trials, 0 finalist runs and 2 final runs of BC on pickplace; about" in printed
    assert "; core-minutes a trial, by bmil check: BC " in printed  # BC's own cost, timed
    assert "bc trial 0: validation" in printed and "bc trial 1: validation" in printed
    assert re.search(r"core-hours before pruning \(trials \d+\.\d\d, finalists 0\.00, final runs \d+\.\d\d; core-minutes "
                     r"a trial", printed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["winner"] == "bc" and summary["trials"]["bc"] == {"complete": 2, "pruned": 0, "fail": 0}
    spent = summary["core_hours"]  # each stage's fits, from their clocks
    clocks = {stage: sum(json.loads((out / "runs" / f"pickplace__bc_{name}__s{seed}" / "version_0" / "result.json")
                                    .read_text())["seconds"] for name, seed in runs) / 3600
              for stage, runs in (("trials", [("trial_0", 100), ("trial_1", 100)]),
                                  ("final runs", [("defaults", 0), (f"tuned_trial_{chosen_trial}", 0)]))}
    assert spent["finalists"] == 0 and all(spent[k] == pytest.approx(v) and v > 0 for k, v in clocks.items())
    assert spent["total"] == pytest.approx(sum(clocks.values()))
    # The checks the trials skipped (their first quarter), costed at their own checks' measured time.
    trial_epochs = [_epochs(out / "runs" / f"pickplace__bc_trial_{i}__s100" / "version_0") for i in (0, 1)]
    skipped = summary["skipped_checks"]
    assert skipped["trials"]["checks"] == sum(e // 4 for e in trial_epochs)
    assert (skipped["trials"]["core_hours"] > 0) == (skipped["trials"]["checks"] > 0)
    assert skipped["finalists"] == skipped["final runs"] == {"checks": 0, "core_hours": 0.0}
    timed = json.loads((out / "runs" / "pickplace__bc_trial_0__s100" / "version_0" / "validation_seconds.json").read_text())
    history = json.loads((out / "runs" / "pickplace__bc_trial_0__s100" / "version_0" / "validation.json").read_text())["history"]
    assert timed["epochs"] == [h["epoch"] for h in history] and all(t > 0 for t in timed["seconds"])
    chosen = summary["chosen"]["bc"]["settings"]
    assert yaml.safe_load((out / "tuned_bc.yaml").read_text())["model"]["init_args"]["policy"]["lr"] == \
        chosen["model.policy.lr"]
    assert '# bmil tune task: {"env": "pickplace", "demos": ' in (out / "tuned_bc.yaml").read_text()
    for name in ("policy.pt", "table.md", "history_bc.png", "importances_bc.png", "validation_vs_test.png"):
        assert (out / name).is_file(), name

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert len(events.Scalars("tune/bc/validation")) == 2 and "tune/validation_vs_test" in events.Tags()["images"]

    # A killed tune: one trial was asked (running) and never told. The rerun finishes it first, runs one
    # new trial for --trials 4, and repeats none of the finished ones.
    study = optuna.load_study(study_name="bc", storage=open_storage(out / JOURNAL))
    stale = study.ask({"model.policy.lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True),
                       "trainer.max_epochs": optuna.distributions.CategoricalDistribution(["2", "4", "8"])})
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*trial*/version_0/result.json")}
    capsys.readouterr()
    _tune("--methods", "bc", "--trials", "4", "--config", "unread.yaml")
    assert "plan: 2 trials, 0 finalist runs and 0 final runs to do (2, 0 and 2 done) of BC" in capsys.readouterr().out
    trials = _trials(out, "bc")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and trials[stale.number].value is not None
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not run again


@pytest.fixture
def instant_fits(monkeypatch):
    """The tuner's fits end at once (probes.InstantFits), its cost estimate fixed."""
    return use_instant_fits(monkeypatch)


def test_the_defaults_compete_with_the_finalists_on_fresh_seeds(task_folder, instant_fits, capsys):
    _tune("--methods", "bc", "--trials", "3", "--finalists", "1", "--finalist_seeds", "2", "--finalist_episodes", "8",
          "--final_seeds", "0")
    out = task_folder / "tune" / "t"
    assert "plan: 3 trials, 4 finalist runs and 0 final runs of BC on pickplace; about 0.2 core-hours" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    best = max(_trials(out, "bc"), key=lambda t: t.value).number
    finalists = [run for executor in instant_fits for run in executor.submitted if run.stage == "finalist"]
    assert sorted((run.method, run.seed) for run in finalists) == sorted(
        (f"bc finalist {name}", seed) for name in ("defaults", best) for seed in (101, 102))
    lrs = {run.method: run.settings["model"]["init_args"]["policy"]["lr"] for run in finalists}
    assert lrs["bc finalist defaults"] == 3e-4 and lrs[f"bc finalist {best}"] == _trials(out, "bc")[best].params["model.policy.lr"]
    for run in finalists:  # more validation starts, no test
        assert run.settings["validation"]["episodes"] == 8 and run.settings["robustness"]["final_episodes"] == 0
    score = {name: 1 / (1 + abs(math.log(lr / 5e-4))) for name, lr in lrs.items()}
    chosen = summary["chosen"]["bc"]
    winner = max(score, key=score.get)
    assert chosen["score"] == pytest.approx(score[winner]) and chosen["seeds"] == [101, 102]
    assert chosen["trial"] == (None if winner == "bc finalist defaults" else best) and summary["final"] == {}
    assert not (out / "policy.pt").exists() and "No final test" in (out / "table.md").read_text()
    rerun = capsys.readouterr()
    _tune("--methods", "bc", "--trials", "3", "--finalists", "1", "--finalist_seeds", "2", "--finalist_episodes", "8",
          "--final_seeds", "0")  # resumed: every stage's runs found done by their records' stages
    assert "plan: 0 trials, 0 finalist runs and 0 final runs to do (3, 4 and 0 done) of BC" in capsys.readouterr().out, rerun


def test_a_trial_refused_for_bad_settings_fails_and_the_study_goes_on(task_folder, instant_fits, capsys):
    (task_folder / "space.yaml").write_text(yaml.safe_dump({"bc": {"model.policy.lr": {"choices": [-0.001, 0.0003]},
                                                                   "trainer.max_epochs": None}}))
    _tune("--methods", "bc", "--trials", "4", "--space", "space.yaml", "--seed", "1", "--final_seeds", "0")
    states = [t.state.name for t in _trials(task_folder / "tune" / "t", "bc")]
    assert "FAIL" in states and "COMPLETE" in states and len(states) == 4
    assert "failed (FAILED (exit code 2)" in capsys.readouterr().out


def test_a_fit_reports_its_checks_and_stops_when_the_pruner_says(tmp_path):
    from types import SimpleNamespace

    from callbacks import TrialReport, Validation

    journal = tmp_path / JOURNAL
    study = optuna.create_study(study_name="bc", storage=open_storage(journal), direction="maximize")
    for _ in range(4):  # four finished trials that validated at 0.8 at every check
        trial = study.ask()
        for epoch in (1, 2, 3, 4):
            trial.report(0.8, epoch)
        study.tell(trial, 0.8)
    number = study.ask().number
    validation = Validation(every_n_epochs=1)
    trainer = SimpleNamespace(callbacks=[validation], max_epochs=4, should_stop=False, is_global_zero=True, world_size=1,
                              logger=SimpleNamespace(log_dir=str(tmp_path / "run")), default_root_dir=str(tmp_path))
    report = TrialReport(str(journal), "bc", number, validation)
    validation.history.append({"epoch": 1, "rate": 0.1})
    report.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop  # the first quarter of training is never pruned
    validation.history.append({"epoch": 2, "rate": 0.1})
    report.on_train_epoch_end(trainer, None)
    assert trainer.should_stop
    assert json.loads((tmp_path / "run" / "pruned.json").read_text()) == {"epoch": 2, "rate": 0.1}
    reported = optuna.load_study(study_name="bc", storage=open_storage(journal)).trials[number].intermediate_values
    assert reported == {1: 0.1, 2: 0.1}
    # At its last epoch a trial is finished, not pruned, however low its check.
    last = TrialReport(str(journal), "bc", study.ask().number, validation)
    trainer.should_stop = False
    validation.history[:] = [{"epoch": 4, "rate": 0.0}]
    last.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop


def test_successive_halving_keeps_the_best_third_at_each_rung_and_skips_no_rung(tmp_path):
    """--pruner halving: at the first rung (epoch 2 here) and at 3x it, a trial goes on only among the
    best third of those that reached it; the rungs are the same epochs for every trial."""
    from types import SimpleNamespace

    from callbacks import TrialReport, Validation

    journal = tmp_path / JOURNAL
    study = optuna.create_study(study_name="bc", storage=open_storage(journal), direction="maximize")
    validation = Validation(every_n_epochs=2)
    trainer = SimpleNamespace(callbacks=[validation], max_epochs=8, should_stop=False, is_global_zero=True, world_size=1,
                              logger=SimpleNamespace(log_dir=str(tmp_path / "run")), default_root_dir=str(tmp_path))

    def check(rate: float, epoch: int = 2) -> bool:
        """A new trial's check at ``epoch``: whether the pruner stops it there."""
        trainer.should_stop = False
        validation.history[:] = [{"epoch": epoch, "rate": rate}]
        TrialReport(str(journal), "bc", study.ask().number, validation, "halving", 2).on_train_epoch_end(trainer, None)
        return trainer.should_stop

    assert not check(0.5)  # alone at the rung: the best there
    assert check(0.4) and not check(0.6)  # fewer than 3 there: only the best goes on
    assert [check(r) for r in (0.1, 0.2, 0.3)] == [True, True, True]  # 6 there: the best 2 (0.6, 0.5) go on
    assert not check(0.55)  # 7 there: the best 2 are 0.6 and 0.55
    assert check(0.5, epoch=4) is True  # epoch 4: before rung 1 (epoch 6), so rung 0 decides, which it fails


def test_a_fit_told_to_report_to_a_trial_checks_it_first(tmp_path):
    from types import SimpleNamespace

    from callbacks import TrialReport

    trainer = SimpleNamespace(max_epochs=4)
    with pytest.raises(BMILError, match="no such Optuna journal"):
        TrialReport(str(tmp_path / "none.journal"), "bc", 0).check(trainer)
    study = optuna.create_study(study_name="bc", storage=open_storage(tmp_path / JOURNAL))
    with pytest.raises(BMILError, match="has no trial 0"):
        TrialReport(str(tmp_path / JOURNAL), "bc", 0).check(trainer)
    trial = study.ask()
    TrialReport(str(tmp_path / JOURNAL), "bc", trial.number).check(trainer)  # running: fine
    study.tell(trial, 0.5)
    with pytest.raises(BMILError, match="is complete, not running"):
        TrialReport(str(tmp_path / JOURNAL), "bc", trial.number).check(trainer)
    TrialReport().check(trainer)  # not a trial: nothing to check


def test_a_journal_torn_by_a_crash_is_cut_back_and_the_tune_ends_as_an_uninterrupted_one(task_folder, instant_fits,
                                                                                        capsys):
    args = ("--methods", "bc", "--trials", "3", "--final_seeds", "0")
    _tune(*args)
    out = task_folder / "tune" / "t"
    whole = [(t.number, t.state.name, t.params, t.value) for t in _trials(out, "bc")]
    journal = (out / JOURNAL).read_bytes()
    (out / JOURNAL).write_bytes(journal[:-12])  # the driver killed while it wrote its last record
    capsys.readouterr()
    _tune(*args)
    assert "its last line was cut short" in capsys.readouterr().out
    assert [(t.number, t.state.name, t.params, t.value) for t in _trials(out, "bc")] == whole
    torn = journal[journal.rfind(b"\n", 0, len(journal) - 1) + 1:-12]
    assert (out / (JOURNAL + ".torn")).read_bytes() == torn + b"\n"  # what was cut, kept


def test_a_journal_damaged_before_its_end_is_one_error_naming_the_line(task_folder, instant_fits, capsys):
    _tune("--methods", "bc", "--trials", "2", "--final_seeds", "0")
    path = task_folder / "tune" / "t" / JOURNAL
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"garbage", *lines[1:]]))
    with pytest.raises(SystemExit):
        _tune("--methods", "bc", "--trials", "2", "--final_seeds", "0")
    err = capsys.readouterr().err
    assert f"bmil: error: {path} is damaged at line 2" in err and "Traceback" not in err


@pytest.mark.parametrize("space, message", [
    ({"bcc": {"model.policy.lr": {"low": 1e-4, "high": 1e-3}}}, "bmil: error: --space: 'bcc' names no method"),
    ({"bc": {"model.policy.lrr": {"low": 1e-4, "high": 1e-3}}},
     "bmil: error: --space: bc's 'model.policy.lrr' is no setting of its fit"),
])
def test_a_space_naming_no_method_or_no_setting_is_refused_before_any_work(task_folder, space, message, capsys):
    (task_folder / "space.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(SystemExit):
        _tune("--methods", "bc", "--trials", "1", "--space", "space.yaml")
    captured = capsys.readouterr()
    assert message in captured.err and "plan:" not in captured.out and not (task_folder / "tune").exists()


@pytest.mark.parametrize("option", ["--trial_episodes", "--finalist_episodes", "--jobs"])
def test_zero_starts_or_jobs_are_refused_not_replaced_by_the_default(task_folder, option, capsys):
    with pytest.raises(SystemExit):
        _tune("--methods", "bc", "--trials", "1", option, "0")
    captured = capsys.readouterr()
    assert f"bmil: error: {option} = 0 is out of range: it must be at least 1." in captured.err
    assert "plan:" not in captured.out and not (task_folder / "tune").exists()


def test_the_stages_validate_on_half_and_all_of_the_configs_starts_unless_given():
    from bmil.tuning.fidelity import stage_episodes

    assert stage_episodes(200, None, None) == (100, 200) and stage_episodes(1, None, None) == (1, 1)
    assert stage_episodes(200, 50, 500) == (50, 500)


def test_a_tune_is_bound_to_its_task_and_refuses_another_config_on_its_folder(task_folder, instant_fits, capsys):
    _tune("--methods", "bc", "--trials", "1", "--final_seeds", "0")
    (task_folder / "other.yaml").write_text(yaml.safe_dump({"validation": {"episodes": 5}}))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _tune("--methods", "bc", "--trials", "2", "--final_seeds", "0", "--config", "other.yaml")
    captured = capsys.readouterr()
    assert "holds a tune of another task: its studies were made with settings" in captured.err
    assert "plan:" not in captured.out and len(_trials(task_folder / "tune" / "t", "bc")) == 1


def test_one_driver_owns_a_tune_and_a_second_is_refused_naming_the_first(task_folder, instant_fits, capsys):
    import fcntl
    import os

    out = task_folder / "tune" / "t"
    out.mkdir(parents=True)
    with open(out / "tune.lock", "w") as held:  # a driver running: it holds the lock, its pid inside
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(SystemExit):
            _tune("--methods", "bc", "--trials", "1", "--final_seeds", "0")
        assert "is being tuned by another bmil tune (pid 4242)" in capsys.readouterr().err
    assert not (out / JOURNAL).exists()  # refused before any work
    _tune("--methods", "bc", "--trials", "1", "--final_seeds", "0")  # once the first has ended
    assert (out / "tune.lock").read_text() == str(os.getpid())


def test_a_trial_another_process_runs_leaves_the_tune_unfinished_not_partial(task_folder, instant_fits, monkeypatch,
                                                                           capsys):
    from probes import InstantFits

    from bmil.runs import launch

    submit = InstantFits.submit

    def trial_1_busy(self, out, run):  # its run folder locked by an orphaned fit of a killed tune
        if run.method == "bc trial 1":
            done = Future()
            done.set_result(launch.busy(run, run.folder(out)))
            return done
        return submit(self, out, run)

    monkeypatch.setattr(InstantFits, "submit", trial_1_busy)
    with pytest.raises(SystemExit):
        _tune("--methods", "bc", "--trials", "3", "--final_seeds", "0")
    captured = capsys.readouterr()
    assert "bc trial 1 run in another process" in captured.err and "nothing was chosen or written" in captured.err
    out = task_folder / "tune" / "t"
    assert not (out / "tuned_bc.yaml").exists() and not (out / "table.md").exists()
    monkeypatch.setattr(InstantFits, "submit", submit)  # the other process has ended
    _tune("--methods", "bc", "--trials", "3", "--final_seeds", "0")
    assert [t.state.name for t in _trials(out, "bc")] == ["COMPLETE"] * 3 and (out / "tuned_bc.yaml").is_file()


def test_a_tuned_overlay_is_refused_over_another_task_unless_asked(user_folder, capsys):
    from bmil.lightning_cli import tuned_task
    from bmil.methods import get_method
    from bmil.tuning.outputs import write_overlay

    choice = {"trial": 3, "score": 0.5, "settings": {"trainer.max_epochs": 8, "model.policy.lr": 0.002}}
    write_overlay(user_folder / "tuned_bc.yaml", get_method("bc"), choice,
                  tuned_task(fit_settings(["--config", "conf/point_umaze.yaml"])))
    check = ["check", "--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml", "--config", "tuned_bc.yaml",
             "--timed_epochs", "0"]
    with pytest.raises(SystemExit):
        main(check)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bmil: error: tuned_bc.yaml holds settings bmil tune chose for another task (env: tuned on point_umaze, this "
        "run pickplace). Layer it over the config it was tuned on, tune this task, or add --tuned_elsewhere true to "
        "apply it anyway.")
    main([*check, "--tuned_elsewhere", "true"])
    assert "every check passed" in capsys.readouterr().out
    write_overlay(user_folder / "tuned_bc.yaml", get_method("bc"), choice,
                  tuned_task(fit_settings(["--config", "conf/pickplace_quick.yaml", "--config", "tiny.yaml"])))
    main(check)  # over the task it was tuned on
    assert "every check passed" in capsys.readouterr().out


def test_a_tunes_executor_waits_for_a_fit_another_process_still_runs(task_folder, capsys):
    """A rerun started while a killed tune's fit is still ending waits for it, then finishes the run;
    a study's executor skips it instead (another driver of the study runs it), and a tune being
    stopped stops waiting."""
    import subprocess
    import sys
    import time

    from bmil.executors.local import LocalExecutor
    from bmil.runs.launch import lock_run
    from bmil.runs.run import Run

    out = task_folder / "tune" / "t"
    run = Run("pickplace", "bc trial 0", 100, ("conf/pickplace_quick.yaml", "tiny.yaml", "conf/bc.yaml"),
              ("--trainer.max_epochs", "1"))
    folder = run.folder(out)
    folder.path.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | "
                               "os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(2)",
                               str(folder / folder.LOCK)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert lock_run(folder) is None  # a study's executor: busy, skipped
    assert lock_run(folder, wait=lambda: False) is None  # a tune being stopped: no more waiting
    started = time.monotonic()
    with LocalExecutor(1, die_with_driver=True) as executor:
        result = executor.submit(out, run).result()
    assert time.monotonic() - started > 1.0 and holder.wait() == 0
    assert not result.get("failed") and folder.is_done(), result  # waited, then ran the fit to its end
    assert f"waiting for {folder.path}: another process runs its fit" in capsys.readouterr().out


def test_a_configured_envs_task_survives_its_record_and_ignores_how_the_env_is_named_and_checked():
    from bmil.lightning_cli import tuned_task

    base = fit_settings(["--config", "conf/examples/pointmaze_umaze.yaml"])
    recorded = json.loads(json.dumps(tuned_task(base)))  # as the overlay's line holds it
    again = tuned_task({"model": {"init_args": {"env": recorded["env"], "demos": {"path": recorded["demos"]}}}})
    assert again == tuned_task(base) and again["demos"] == "minari:pointmaze/umaze-bmil-v0"
    renamed = fit_settings(["--config", "conf/examples/pointmaze_umaze.yaml", "--model.init_args.env.name", "mine",
                            "--model.init_args.env.starts_check", "warn"])
    assert tuned_task(renamed) == again
    other = fit_settings(["--config", "conf/examples/pointmaze_umaze.yaml", "--model.init_args.env.horizon", "500"])
    assert tuned_task(other)["env"] != again["env"]
