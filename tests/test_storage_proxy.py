"""bmil's use of Optuna's gRPC proxy in front of a journal (a tune on a Ray cluster): Optuna says a
JournalStorage behind the proxy can fail when one process creates a trial and another reports to it
(optuna#6084). In bmil the driver alone creates and ends trials, on the storage object it serves,
and each fit only reports its checks to its own trial and reads the study to prune. Stressed here
on loopback: many fits reporting at once through the proxy while the driver asks and tells, one
fit killed mid-report; the journal stays whole and every report lands."""

import multiprocessing as mp
import os
import signal
import time

import optuna
import pytest

pytest.importorskip("grpc")

from bmil.tuning.storage import JOURNAL, grpc_proxy, make_pruner, open_storage  # noqa: E402

FITS, CHECKS = 8, 40


def _fit(port: int, number: int, reported) -> None:
    """A trial's fit, as callbacks.TrialReport reports: each check's value, then whether to prune."""
    study = optuna.load_study(study_name="bc", storage=open_storage(f"grpc://127.0.0.1:{port}"),
                              pruner=make_pruner(CHECKS))
    trial = optuna.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)
    for step in range(CHECKS):
        trial.report(number + step / 100, step)
        trial.should_prune()
        reported.value = step + 1


@pytest.mark.slow
def test_many_fits_report_through_the_proxy_while_the_driver_asks_and_tells(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(tmp_path / JOURNAL)
    study = optuna.create_study(study_name="bc", storage=storage, direction="maximize")
    numbers = [study.ask().number for _ in range(FITS)]
    spawn = mp.get_context("spawn")
    with grpc_proxy(storage, host="127.0.0.1") as port:
        reported = [spawn.Value("i", 0) for _ in numbers]
        fits = [spawn.Process(target=_fit, args=(port, n, r)) for n, r in zip(numbers, reported)]
        for fit in fits:
            fit.start()
        deadline = time.monotonic() + 120
        while reported[0].value < 3 and time.monotonic() < deadline:  # trial 0's fit: killed mid-run
            study.ask()  # the driver goes on asking while the fits report
            time.sleep(0.05)
        os.kill(fits[0].pid, signal.SIGKILL)
        for fit in fits[1:]:
            fit.join(timeout=120)
        fits[0].join(timeout=10)
        assert [fit.exitcode for fit in fits] == [-signal.SIGKILL] + [0] * (FITS - 1)
        for n in numbers[1:]:
            study.tell(n, n)
        study.tell(numbers[0], state=optuna.trial.TrialState.FAIL)
    again = optuna.load_study(study_name="bc", storage=open_storage(tmp_path / JOURNAL))  # the file, read afresh
    trials = again.get_trials(deepcopy=False)
    for n in numbers[1:]:
        assert trials[n].state.name == "COMPLETE"
        assert trials[n].intermediate_values == {step: n + step / 100 for step in range(CHECKS)}
    killed = trials[numbers[0]].intermediate_values
    assert trials[numbers[0]].state.name == "FAIL" and killed == {step: step / 100 for step in range(len(killed))}
    assert len(killed) >= 3 and again.ask().number == len(trials)  # the journal takes more
