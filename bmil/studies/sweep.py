"""A study's sweep: which of its runs are done (``result.json``, written by each fit itself), which
are left and in what order, and those run through an executor (``bmil/executors``); ``plan`` says
what is left and its cost without running anything. A finished run is skipped when the study is run
again; an interrupted one resumes from its ``last.ckpt``; a stopped study (Ctrl-C, SIGTERM) stops
its fits."""

from __future__ import annotations

import math
import signal
import threading
from concurrent.futures import as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from bmil.executors import make_executor
from bmil.files import copy_file
from bmil.runs.folder import RunFolder
from bmil.runs.launch import check_signature, prepare_demos, result_of
from bmil.runs.run import Run
from bmil.studies.catalog import Study


def _evaluation_workers(jobs: int, runs: int) -> int:
    """Worker processes for each fit's evaluations: 0 (in process) while there is a run for every
    job; with fewer runs than jobs (a study's last run, resumed alone), each fit evaluates over its
    share of the idle cores (outcomes do not depend on the worker count). A run started later from
    the queue always has a run beside it for every other job, so the share is fixed at the start."""
    share = max(1, jobs) // max(1, min(jobs, runs))
    return share if share > 1 else 0


def longest_first(runs: list[Run]) -> list[Run]:
    """``runs`` in a cost order (stable otherwise): VINS first (its test-time search of 500 candidates
    per step dominates a run), then the most policy steps per epoch, then runs that learn from
    traces before those that do not (the backwards model, trained every epoch, made maze BMIL runs
    about twice as long as BC's). A long run (Figure 6's 20x BC) started last would run alone at the
    end while the other workers idle."""

    def cost(run: Run) -> tuple:
        model = run.settings["model"]
        method = model["class_path"].rsplit(".", 1)[-1]
        return method == "VINS", model["init_args"]["policy"]["steps_per_epoch"], method == "BMIL"

    return sorted(runs, key=cost, reverse=True)


def run_study(study: Study, out: Path, jobs: int, progress=print,
              methods: Optional[set[str]] = None, reuse: tuple[Path, ...] | list[Path] = (),
              executor: str = "local", ray_address: Optional[str] = None) -> list[dict]:
    """Run every unfinished run of ``study`` (``jobs`` at a time on this machine, or as Ray tasks),
    or of its ``methods`` only, after taking the finished runs of the ``reuse`` folders that match;
    returns their results."""
    for run in study.runs:
        check_signature(out, run)
    taken = [run for run in study.runs if not run.folder(out).is_done() and _take_finished(run, reuse, out)]
    if taken:
        progress(f"{study.name}: took {len(taken)} finished runs made with the same settings from "
                 f"{', '.join(map(str, reuse))}")
    unfinished = [r for r in study.runs if not r.folder(out).is_done()]
    todo = longest_first([r for r in unfinished if methods is None or r.method in methods])
    done, left = len(study.runs) - len(unfinished), len(unfinished) - len(todo)
    at_once = f"{jobs} at a time" if executor == "local" else "as Ray tasks"
    progress(f"{study.name}: {len(study.runs)} runs, {done} already done, running {len(todo)} "
             f"({at_once}){f', leaving {left} of other methods' if left else ''} in {out}")
    prepare_demos(todo)
    with _sigterm_stops_the_study():
        return _run_parallel(todo, out, jobs, progress, executor, ray_address)


def plan(study: Study, out: Path, methods: Optional[set[str]] = None, sources: tuple[Path, ...] | list[Path] = ()) -> str:
    """The runs to do and those done, per domain and method, with the core-hours the runs to do will
    take, estimated from the recorded times (``seconds`` in ``result.json``) of finished runs of the
    same domain and method here or in ``sources``, else of the same method; nothing runs."""
    import numpy as np

    times: dict = {}
    for folder in (out, *sources):
        for run in study.runs:
            if run.folder(folder).is_done():
                seconds = result_of(folder, run).get("seconds")
                if seconds:
                    times.setdefault((run.domain, run.method), []).append(seconds)
    by_method: dict = {}
    for (_, method), values in times.items():
        by_method.setdefault(method, []).extend(values)
    rows, total, unknown, todo_runs = [], 0.0, 0, 0
    for domain, method in dict.fromkeys((r.domain, r.method) for r in study.runs):
        runs = [r for r in study.runs if (r.domain, r.method) == (domain, method)]
        done = sum(r.folder(out).is_done() for r in runs)
        todo = 0 if methods is not None and method not in methods else len(runs) - done
        recorded = times.get((domain, method)) or by_method.get(method)
        hours = todo * float(np.mean(recorded)) / 3600 if recorded and todo else 0.0
        unknown += todo if not recorded else 0
        total, todo_runs = total + hours, todo_runs + todo
        rows.append(f"| {domain} | {method} | {todo} | {done} | {f'{hours:.2f}' if recorded or not todo else '?'} |")
    head = ["| domain | method | to do | done | core-hours (est.) |", "| --- | --- | --- | --- | --- |"]
    note = f"; {unknown} runs with no recorded time of their method are not counted" if unknown else ""
    return "\n".join([*head, *rows, "", f"{study.name}: {todo_runs} runs to do, about {total:.1f} core-hours from the "
                       f"recorded run times{note}. Nothing was run (--plan)."])


def _take_finished(run: Run, sources, out: Path) -> bool:
    """Copy ``run``'s records from the first source folder where the same run finished with the
    same settings; whether one did."""
    for source in sources:
        if run.folder(source).is_done() and result_of(source, run).get("signature") == run.signature:
            for name in RunFolder.RECORDS:  # (the result, which marks the run finished, last)
                if (run.folder(source) / name).is_file():
                    copy_file(run.folder(source) / name, run.folder(out) / name)
            return True
    return False


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def _sigterm_stops_the_study():
    """SIGTERM (``kill``) raises SystemExit as Ctrl-C raises KeyboardInterrupt, so both stop the
    study's fits. Python runs signal handlers in the main thread only; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = (signal.getsignal(signal.SIGINT), signal.signal(signal.SIGTERM, _raise_on_sigterm))
    try:
        yield
    finally:
        for signum, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
            if handler is not None:  # None: a handler set from C, which cannot be put back
                signal.signal(signum, handler)


def _status(result: dict) -> str:
    """A finished run in a few words: its test robustness, or its validation score where it skipped the test."""
    if result.get("failed"):
        return result["error"]
    if result["robustness"] is not None:
        return f"robustness {100 * result['robustness']:.1f}% in {result['seconds']:.0f} s"
    return f"validation score {100 * result.get('validation_late', math.nan):.1f}% in {result['seconds']:.0f} s"


def _run_parallel(todo: list[Run], out: Path, jobs: int, progress, kind: str = "local",
                  ray_address: Optional[str] = None) -> list[dict]:
    results = []
    try:
        with make_executor(kind, jobs, ray_address, _evaluation_workers(jobs, len(todo))) as executor:
            for future in as_completed([executor.submit(out, r) for r in todo]):  # in the order they end
                result = future.result()
                progress(f"  {result['run_id']}: {_status(result)}")
                results.append(result)
    except BaseException:
        finished = sum(not r.get("failed") for r in results)
        progress(f"stopped; {finished} runs finished in this invocation. Rerun the same command "
                 "to continue: unfinished runs resume from their last checkpoint.")
        raise
    return results
