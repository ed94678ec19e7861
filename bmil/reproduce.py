"""``bmil reproduce``: the paper's comparisons as named studies of independent ``bmil fit`` runs.

A study is a list of runs (domain x method x seed, each a config plus overrides). Runs execute as
separate ``bmil fit`` processes, several at once (small runs: parallel seeds beat one big run), one
torch thread and one evaluation worker each. A finished run leaves ``result.json`` in its folder
and is skipped when the study is run again; an interrupted run resumes from its ``last.ckpt``.
A run's folder is locked while its fit runs (the fit itself holds the lock), so a second sweep
never starts a run that another one, or an orphaned fit of a killed sweep, is still writing; and a
sweep that is stopped (Ctrl-C, SIGTERM) stops its fits, which resume from ``last.ckpt`` next time.
The study folder gets ``results.csv`` (one row per run) and ``table.md`` (mean +- 95% t-interval
over seeds per method and domain, the ratio to BC, training success), plus a PNG per ablation.

Studies (original-code-facts §10, §11; the paper's Table 1, Table 2, Figures 5a, 5b and 6):
  table1  BC, VINS and BMIL on every domain with the original's hyper-parameters
  table2  BMIL with a backwards vs a forward model
  fig5a   trace action selection: none, RS(b), SC(c)
  fig5b   number of demonstrations (BC and BMIL)
  fig6    BC with 1x-20x the policy steps
  table6  model first, then policy vs alternating (Algorithm 1)
"""

from __future__ import annotations

import csv
import fcntl
import fnmatch
import hashlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from bmil.errors import BMILError

# Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) over seeds; half-width NaN for one value."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    df = len(values) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df  # (within 0.002 of t for df > 30)
    return mean, t * float(values.std(ddof=1)) / math.sqrt(len(values))


@dataclass(frozen=True)
class Run:
    """One ``bmil fit``: ``config`` plus ``overrides`` (what the study varies) plus ``extra`` (what
    the user adds, e.g. an evaluation overlay), seeded ``seed``."""

    domain: str
    method: str  # the row label in tables (BC, BMIL, SC(30), 5 demos, ...)
    seed: int
    config: str
    overrides: tuple[str, ...] = ()
    x: Optional[float] = None  # the ablation's axis value (demos, budget multiplier), if any
    family: str = ""  # the line a run belongs to in a line plot (BC, BMIL); default: method
    extra: tuple[str, ...] = ()  # the user's extra ``bmil fit`` args for this run (--extra, --domain_extra)

    @property
    def run_id(self) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in self.method).strip("_")
        return f"{self.domain}__{safe}__s{self.seed}"

    def setting(self, key: str):
        """The run's ``model.<key>``, as its ``bmil fit`` will read it."""
        return _model_setting(self.config, key, (*self.overrides, *self.extra))


@dataclass
class Study:
    name: str
    runs: list[Run]
    baseline: str = "BC"  # ratios are to this method ("" for none)
    plot: str = ""  # "bar" (methods) or "line" (x axis), for the ablation figure
    xlabel: str = ""


# The table studies: (row label, config suffix: <domain>[_suffix].yaml, ``bmil fit`` overrides).
TABLES = {
    "table1": [("BC", "bc", ()), ("VINS", "vins", ()), ("BMIL", "", ())],
    "table2": [("BC", "bc", ()), ("BMIL (forwards)", "", ("--model.dynamics", "forward")),
               ("BMIL (backwards)", "", ())],
    "table6": [("BC", "bc", ()), ("BMIL (model first)", "", ("--model.model_schedule", "first")),
               ("BMIL (alternating)", "", ())],
}


def make_study(name: str, domains: list[str], seeds: list[int], configs: str = "conf") -> Study:
    """The runs of a named study over ``domains`` and ``seeds``, from ``configs``/<domain>[_bc].yaml."""

    def _conf(domain: str, method: str = "") -> str:
        return str(Path(configs) / f"{domain}{'_' + method if method else ''}.yaml")

    if name in TABLES:  # one row per method, each a config and its overrides
        return Study(name, [Run(d, label, s, _conf(d, config), overrides)
                            for d in domains for s in seeds for label, config, overrides in TABLES[name]])
    runs: list[Run] = []
    add = runs.append
    if name == "fig5a":
        choices = [("None", "none", 0.0), ("RS(0.5)", "rs", 0.5), ("RS(1)", "rs", 1.0),
                   ("SC(10)", "sc", 10.0), ("SC(30)", "sc", 30.0), ("SC(50)", "sc", 50.0)]
        for d in domains:
            for s in seeds:
                for label, strategy, coef in choices:
                    add(Run(d, label, s, _conf(d), ("--model.action_selection", strategy,
                                                    "--model.selection_coef", str(coef))))
        return Study(name, runs, baseline="None", plot="bar", xlabel="action selection")
    if name == "fig5b":
        for d in domains:
            for s in seeds:
                for n in (1, 2, 5, 10, 20):
                    demos = ("--model.num_demos", str(n))
                    add(Run(d, f"BC {n} demos", s, _conf(d, "bc"), demos, x=n, family="BC"))
                    add(Run(d, f"BMIL {n} demos", s, _conf(d), demos, x=n, family="BMIL"))
        return Study(name, runs, baseline="", plot="line", xlabel="demonstrations")
    if name == "fig6":
        for d in domains:
            for s in seeds:
                steps_per_epoch = _model_setting(_conf(d, "bc"), "policy_steps_per_epoch")
                for mult in (1, 2, 5, 10, 20):
                    # More steps per epoch, same epochs: the evaluation schedule stays comparable.
                    steps = ("--model.policy_steps_per_epoch", str(mult * steps_per_epoch))
                    add(Run(d, f"BC {mult}x", s, _conf(d, "bc"), steps, x=mult, family="BC"))
                add(Run(d, "BMIL", s, _conf(d)))
        return Study(name, runs, baseline="BC 1x", plot="line", xlabel="BC policy steps (x the original)")
    raise BMILError(f"unknown study '{name}'. Studies: {', '.join(STUDIES)}.")


STUDIES = ("table1", "table2", "fig5a", "fig5b", "fig6", "table6")


def _model_setting(config: str, key: str, overrides: tuple[str, ...] = ()):
    """A ``model.<key>`` value as a run will see it: as LightningCLI reads the arguments, the last of
    its config, any ``--config`` overlay among ``overrides`` and any ``--model.key value`` or
    ``--model.key=value`` flag wins; without any, the module's default."""
    import yaml

    flag, found, value = f"--model.{key}", False, None
    args = ("--config", config, *overrides)
    for arg, following in zip(args, (*args[1:], None)):
        if arg == "--config" and following is not None:
            model = _config_model(following)
            if key in model:
                found, value = True, model[key]
        elif arg == flag and following is not None:
            found, value = True, yaml.safe_load(following)
        elif arg.startswith(flag + "="):
            found, value = True, yaml.safe_load(arg.split("=", 1)[1])
    if found:
        return value
    import inspect

    from bmil.module import BMILModule

    return inspect.signature(BMILModule.__init__).parameters[key].default


def _config_model(config: str) -> dict:
    """The ``model:`` section of a config file."""
    import yaml

    path = Path(config)
    if not path.is_file():
        raise BMILError(f"config '{config}' not found (run bmil reproduce from the project root).")
    return (yaml.safe_load(path.read_text()) or {}).get("model") or {}


# ---- running -----------------------------------------------------------------------------------
def run_dir(out: Path, run: Run) -> Path:
    return out / "runs" / run.run_id / "version_0"


def is_done(out: Path, run: Run) -> bool:
    return (run_dir(out, run) / "result.json").is_file()


def read_result(out: Path, run: Run) -> dict:
    return _read_record(run_dir(out, run) / "result.json", f"delete it to run {run.run_id} again")


def _read_record(path: Path, fix: str) -> dict:
    """A JSON record of a run folder, or one clear error naming the file and ``fix``."""
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            return record
        problem = f"a {type(record).__name__}, not a JSON object"
    except ValueError as e:
        problem = f"{type(e).__name__}: {e}"
    raise _damaged(path, problem, fix)


def _damaged(path: Path, problem: str, fix: str) -> BMILError:
    """The one message for a damaged run-folder record: the file, what is wrong, how to mend it."""
    return BMILError(f"{path} is damaged ({problem}); restore it (git checkout) or {fix}")


def signature(run: Run) -> str:
    """What makes a run's result: the text of its configs (its own and any ``--config`` overlay in
    its extra args), its overrides and its extra args."""
    extra = run.extra
    overlays = [extra[i + 1] for i, arg in enumerate(extra[:-1]) if arg == "--config"]
    texts = [Path(c).read_text() if Path(c).is_file() else "" for c in (run.config, *overlays)]
    return hashlib.sha256(json.dumps([texts[0], list(run.overrides), list(extra), *texts[1:]]).encode()).hexdigest()[:16]


def _check_signature(out: Path, run: Run, expected: str) -> None:
    """Refuse to mix: a finished or interrupted run made with other settings stays as it is."""
    for name in ("result.json", "signature.json"):
        path = run_dir(out, run) / name
        if path.is_file():
            found = _read_record(path, f"delete {run_dir(out, run)}").get("signature")
            if found not in (None, expected):
                raise BMILError(
                    f"{path} was made with other settings (its config, overrides, --extra or "
                    f"--domain_extra changed since). Use another --out for these settings, or delete {run_dir(out, run)}."
                )


def _prepare_demos(runs: list[Run]) -> None:
    """Generate every missing demo set once, before runs start in parallel (no two processes
    write the same dataset)."""
    from bmil.demos import default_demo_path, generate_demos

    wanted = set()
    for run in runs:
        if run.setting("demos"):
            continue
        wanted.add((run.setting("env"), int(run.setting("num_demos")), int(run.setting("demo_seed")),
                    bool(run.setting("demo_stop_on_success"))))
    for env, num, seed, stop in sorted(wanted):
        if not default_demo_path(env, num, seed, stop).exists():
            generate_demos(env, num, seed, stop_on_success=stop, progress=False)


def _command(out: Path, run: Run) -> list[str]:
    cmd = [sys.executable, "-m", "bmil.cli", "fit", "--config", run.config, *run.overrides,
           "--seed_everything", str(run.seed),
           "--trainer.logger.init_args.save_dir", str(out / "runs"),
           "--trainer.logger.init_args.name", run.run_id,
           "--trainer.logger.init_args.version", "0", *run.extra]
    last = run_dir(out, run) / "checkpoints" / "last.ckpt"
    if last.is_file():  # an interrupted run: continue from its last completed epoch
        cmd += ["--ckpt_path", str(last)]
    return cmd


class _Fits:
    """The ``bmil fit`` processes of one ``run_study`` call, so that stopping the study stops them."""

    def __init__(self):
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False  # once set, no new fit starts

    def start(self, cmd: list[str], **popen) -> Optional[subprocess.Popen]:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, **popen)
            self.live.add(proc)
            return proc

    def ended(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.live.discard(proc)

    def stop(self) -> None:
        """Terminate every fit still running (each resumes from its last.ckpt when the study reruns)."""
        with self.lock:
            self.stopping = True
            procs = list(self.live)
        for proc in procs:
            proc.terminate()  # Lightning stops at the next batch; a long evaluation gets killed below
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # safe: checkpoints are written whole, once per epoch
                proc.wait()


def execute(out: Path, run: Run, fits: _Fits) -> dict:
    """Run one ``bmil fit`` to the end and record its result (``result.json``, atomically); a
    failure (of the fit or of reading its results), a run busy in another process or one not
    started because the study stopped is returned as ``{"failed": True, "error": <message>}``."""
    try:
        return _execute(out, run, fits)
    except Exception as e:  # one broken run must not stop the study or its report
        return _failed(run, f"FAILED ({e}), see {run_dir(out, run) / 'fit.log'}")


def _failed(run: Run, error: str) -> dict:
    return {"run_id": run.run_id, "failed": True, "error": error}


def _lock_run(folder: Path) -> Optional[int]:
    """An exclusive lock on ``folder/run.lock``, or None when another process holds it. The fit
    inherits the descriptor, so the lock lasts as long as the fit does, even an orphaned one."""
    fd = os.open(folder / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _execute(out: Path, run: Run, fits: _Fits) -> dict:
    folder = run_dir(out, run)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock_run(folder)
    if lock is None:
        return _failed(run, f"skipped: another process is running it ({folder / 'run.lock'} is held); "
                            "rerun the study when that process has ended")
    try:
        if is_done(out, run):  # finished by another process while this one waited its turn
            return read_result(out, run)
        return _fit(out, run, folder, lock, fits)
    finally:
        os.close(lock)


def _fit(out: Path, run: Run, folder: Path, lock: int, fits: _Fits) -> dict:
    sig = signature(run)
    _atomic_json(folder / "signature.json", {"signature": sig})
    resumed = (folder / "checkpoints" / "last.ckpt").is_file()
    clock = _RunClock(folder / "elapsed.json", resumed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BMIL_EVAL_WORKERS": "0"}
    with open(folder / "fit.log", "a") as log:
        proc = fits.start(_command(out, run), stdout=log, stderr=subprocess.STDOUT, env=env,
                          pass_fds=(lock,))
        if proc is None:
            return _failed(run, "not started: the study was stopped")
        try:
            returncode = clock.wait(proc)
        finally:
            fits.ended(proc)
    seconds = clock.seconds
    if returncode != 0:
        return _failed(run, f"FAILED (exit code {returncode}), see {folder / 'fit.log'}")
    final = json.loads((folder / "robustness_final.json").read_text())
    result = {**asdict(run), "overrides": " ".join(run.overrides), "run_id": run.run_id,
              "robustness": final["success_rate"], "robustness_ci_low": final["ci95"][0],
              "robustness_ci_high": final["ci95"][1], "episodes": final["episodes"],
              "training_success": _last_scalar(folder, "eval/training_success"),
              "seconds": seconds, "resumed": resumed, "extra": shlex.join(run.extra), "signature": sig}
    _atomic_json(folder / "result.json", result)
    return result


class _RunClock:
    """A run's wall time over every invocation of its fit, kept in ``elapsed.json`` in the run
    folder. A run resumed from its ``last.ckpt`` in a later sweep (the one before stopped or killed
    with its machine) thus reports all the time it took, not only its last part: the file is
    rewritten every ``_CLOCK_EVERY_S`` seconds while the fit runs, so a kill loses at most that
    much. A run starting afresh (no checkpoint) starts its clock at zero."""

    def __init__(self, path: Path, resumed: bool):
        self.path = path
        self.before = self._read(path) if resumed and path.is_file() else 0.0
        self.t0 = time.perf_counter()
        self.seconds = self.before  # as last written

    @staticmethod
    def _read(path: Path) -> float:
        fix = "delete it, which resumes the run with its clock at zero, so its 'seconds' undercount"
        seconds = _read_record(path, fix).get("seconds")
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if number and math.isfinite(seconds) and seconds >= 0:
            return float(seconds)
        raise _damaged(path, f"'seconds' is {seconds!r}, not a number of seconds", fix)

    def wait(self, proc: subprocess.Popen) -> int:
        while True:
            try:
                returncode = proc.wait(timeout=_CLOCK_EVERY_S)
            except subprocess.TimeoutExpired:
                returncode = None
            self.seconds = self.before + time.perf_counter() - self.t0
            _atomic_json(self.path, {"seconds": self.seconds})
            if returncode is not None:
                return returncode


_CLOCK_EVERY_S = 60.0


def _atomic_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def _last_scalar(folder: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    if tag not in events.Tags()["scalars"]:
        return math.nan
    return float(events.Scalars(tag)[-1].value)


def longest_first(runs: list[Run]) -> list[Run]:
    """``runs`` in a cost order (stable otherwise): VINS first (its test-time search of 500 candidates
    per step dominates a run), then the most policy steps per epoch, then runs that learn from
    traces before those that do not (the backwards model, trained every epoch, made maze BMIL runs
    about twice as long as BC's). A long run (Figure 6's 20x BC) started last would run alone at the
    end while the other workers idle."""
    costs = {r: (bool(r.setting("vins")), r.setting("policy_steps_per_epoch"), r.setting("demo_ratio") < 1)
             for r in runs}
    return sorted(runs, key=lambda r: costs[r], reverse=True)


def run_study(study: Study, out: Path, jobs: int, progress=print,
              methods: Optional[set[str]] = None) -> list[dict]:
    """Run every unfinished run of ``study`` (``jobs`` at a time), or of its ``methods`` only;
    returns their results."""
    for run in study.runs:
        _check_signature(out, run, signature(run))
    unfinished = [r for r in study.runs if not is_done(out, r)]
    todo = longest_first([r for r in unfinished if methods is None or r.method in methods])
    done, left = len(study.runs) - len(unfinished), len(unfinished) - len(todo)
    progress(f"{study.name}: {len(study.runs)} runs, {done} already done, running {len(todo)} "
             f"({jobs} at a time){f', leaving {left} of other methods' if left else ''} in {out}")
    _prepare_demos(todo)
    with _sigterm_stops_the_study():
        return _run_parallel(todo, out, jobs, progress)


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


def _run_parallel(todo: list[Run], out: Path, jobs: int, progress) -> list[dict]:
    results, fits = [], _Fits()
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # threads only wait on the fit processes
        futures = [pool.submit(execute, out, r, fits) for r in todo]
        try:
            for future in as_completed(futures):  # reported as they end, not in start order
                result = future.result()
                status = result["error"] if result.get("failed") else (
                    f"robustness {100 * result['robustness']:.1f}% in {result['seconds']:.0f} s")
                progress(f"  {result['run_id']}: {status}")
                results.append(result)
        except BaseException:  # Ctrl-C or SIGTERM: stop the fits, not only this process
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not cut
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up short
            pool.shutdown(wait=False, cancel_futures=True)
            fits.stop()
            finished = sum(not r.get("failed") for r in results)
            progress(f"stopped; {finished} runs finished in this invocation. Rerun the same command "
                     "to continue: unfinished runs resume from their last checkpoint.")
            raise
    return results


# ---- results ---------------------------------------------------------------------------------
def collect(study: Study, out: Path) -> list[dict]:
    """The results of the study's finished runs, in study order."""
    return [read_result(out, r) for r in study.runs if is_done(out, r)]


def write_csv(rows: list[dict], path: Path) -> None:
    columns = ["run_id", "domain", "method", "seed", "x", "robustness", "robustness_ci_low",
               "robustness_ci_high", "episodes", "training_success", "seconds", "config", "overrides",
               "extra"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summarize(study: Study, rows: list[dict]) -> dict:
    """{(domain, method): {"robustness": (mean, hw), "training": mean, "seeds": n}} in %."""
    table: dict = {}
    for key in dict.fromkeys((r["domain"], r["method"]) for r in rows):
        values = [r for r in rows if (r["domain"], r["method"]) == key]
        table[key] = {"robustness": t_interval([100 * r["robustness"] for r in values]),
                      "training": float(np.mean([r["training_success"] for r in values])),
                      "seeds": len(values)}
    return table


def _markdown(head: list[str], body: list[list[str]]) -> str:
    """A Markdown table: a header row, its rule, then the body rows."""
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, ["---"] * len(head), *body])


def markdown_table(study: Study, rows: list[dict]) -> str:
    """Domains as rows, methods as columns: robustness mean +- 95% t-interval over seeds (%), the
    ratio of each method's mean to the baseline's, and mean training success."""
    table = summarize(study, rows)
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    others = [m for m in methods if m != study.baseline] if study.baseline in methods else []
    head = ["domain", *methods, *[f"{m} / {study.baseline}" for m in others],
            *[f"train. success {m}" for m in methods]]
    body = []
    for d in domains:
        cells = [d]
        for m in methods:
            entry = table.get((d, m))
            if entry is None:
                cells.append("-")
                continue
            mean, hw = entry["robustness"]
            cells.append(f"{mean:.1f} ± {hw:.1f} (n={entry['seeds']})" if not math.isnan(hw)
                         else f"{mean:.1f} (n=1)")
        base = table.get((d, study.baseline))
        for m in others:
            entry = table.get((d, m))
            ok = entry and base and base["robustness"][0] > 0
            cells.append(f"{entry['robustness'][0] / base['robustness'][0]:.2f}" if ok else "-")
        for m in methods:
            entry = table.get((d, m))
            measured = entry and not math.isnan(entry["training"])  # NaN: no check ran
            cells.append(f"{entry['training']:.2f}" if measured else "-")
        body.append(cells)
    return _markdown(head, body)


def plot_study(study: Study, rows: list[dict], path: Path) -> None:
    """Bar chart (methods) or line chart (x axis) of robustness with 95% t-intervals, per domain."""
    from bmil.plots import plt

    table = summarize(study, rows)
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    fig, axes = plt.subplots(1, len(domains), figsize=(4.5 * len(domains), 3.5), dpi=120, squeeze=False)
    for ax, d in zip(axes[0], domains):
        # One point per method: (family, x, mean, half-width).
        points = {r["method"]: (r["family"] or r["method"], r["x"], *table[(d, r["method"])]["robustness"])
                  for r in rows if r["domain"] == d}
        # Every seed as a dot: with 3 seeds the interval alone hides how the runs spread.
        seeds = [(r["method"], r["x"], 100 * r["robustness"]) for r in rows if r["domain"] == d]
        if study.plot == "bar":
            _, _, means, errs = zip(*points.values())
            ax.bar(list(points), means, yerr=np.nan_to_num(errs), capsize=3, color="tab:blue", alpha=0.6)
            ax.scatter([list(points).index(m) for m, _, _ in seeds], [v for *_, v in seeds],
                       s=12, color="black", zorder=3, label="seeds")
            ax.tick_params(axis="x", rotation=30)
        else:
            colors = _lines(ax, list(points.values()))
            family = {r["method"]: r["family"] or r["method"] for r in rows}
            dots = [(x, v, colors[family[m]]) for m, x, v in seeds if x is not None]
            if dots:  # each seed in its line's colour
                xs, vs, cs = zip(*dots)
                ax.scatter(xs, vs, s=10, c=list(cs), alpha=0.6, zorder=3)
        ax.set(title=d, xlabel=study.xlabel, ylabel="robustness (%)", ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _lines(ax, points: list[tuple]) -> dict:
    """One line per family over x; a family without x values (a reference) is a dashed level.
    Returns each family's colour."""
    colors = {}
    for family in dict.fromkeys(p[0] for p in points):
        mine = sorted((p for p in points if p[0] == family), key=lambda p: p[1] or 0)
        _, xs, means, errs = zip(*mine)
        if xs[0] is None:
            colors[family] = ax.axhline(means[0], ls="--", color="gray", label=family).get_color()
        else:
            line = ax.errorbar(xs, means, yerr=np.nan_to_num(errs), marker="o", capsize=3, label=family)
            colors[family] = line.lines[0].get_color()
    ax.set_xscale("log")
    ticks = sorted({p[1] for p in points if p[1] is not None})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    return colors


# The paper's robustness (%) for the domains bmil has, under our method labels: its Table 1 (Point
# mazes, not Ant) and Table 2. Its point agent differs from ours (docs/reproducing.md).
PAPER = {
    "table1": {
        "push": {"BC": 12.1, "VINS": 12.8, "BMIL": 14.6},
        "pickplace": {"BC": 4.1, "VINS": 3.4, "BMIL": 17.5},
        "point_umaze": {"BC": 49.0, "VINS": 39.5, "BMIL": 47.8},
        "point_room5x11": {"BC": 36.8, "VINS": 17.3, "BMIL": 38.6},
        "point_corridor7x7": {"BC": 33.7, "VINS": 37.7, "BMIL": 38.9},
    },
    "table2": {
        "push": {"BC": 12.1, "BMIL (forwards)": 12.4, "BMIL (backwards)": 14.6},
        "pickplace": {"BC": 4.1, "BMIL (forwards)": 4.1, "BMIL (backwards)": 17.5},
    },
}


def paper_table(study: Study, domains: list[str]) -> str:
    """The paper's numbers for ``domains`` in the layout of ``markdown_table`` ("" if it has none)."""
    paper = PAPER.get(study.name, {})
    known = [d for d in domains if d in paper]
    if not known:
        return ""
    methods = list(paper[known[0]])
    others = [m for m in methods if m != study.baseline]
    head = ["domain", *methods, *[f"{m} / {study.baseline}" for m in others]]
    return _markdown(head, [[d, *[f"{paper[d][m]:.1f}" for m in methods],
                             *[f"{paper[d][m] / paper[d][study.baseline]:.2f}" for m in others]]
                            for d in known])


def write_results(study: Study, out: Path) -> Path:
    rows = collect(study, out)
    write_csv(rows, out / "results.csv")
    table = markdown_table(study, rows) if rows else "(no finished runs)"
    done = f"{len(rows)} of {len(study.runs)} runs finished"
    text = f"# {study.name}\n\nRobustness (%), mean ± 95% t-interval over seeds; {done}.\n\n{table}\n"
    paper = paper_table(study, list(dict.fromkeys(r.domain for r in study.runs)))
    if paper:
        text += (f"\nThe paper's numbers (its {study.name.replace('table', 'Table ')}; other experts and, on "
                 f"the mazes, another point agent: see docs/reproducing.md):\n\n{paper}\n")
    (out / "table.md").write_text(text)
    if study.plot and rows:
        plot_study(study, rows, out / f"{study.name}.png")
    return out / "table.md"


def with_extra(runs: list[Run], extra: list[str], domain_extra: dict[str, str]) -> list[Run]:
    """``runs`` with ``extra`` and then the ``domain_extra`` arguments of every key their domain
    matches (in the given order). A key is comma-separated domain names or globs ("pickplace,push",
    "point_*"); each must match some known domain (a typo is an error), but not necessarily one of
    this study's, so one mapping serves studies over any subset of the domains."""
    from bmil.envs import domain_names

    known = domain_names()
    patterns = {key: [p.strip() for p in key.split(",") if p.strip()] for key in domain_extra}
    for pattern in (p for ps in patterns.values() for p in ps):
        if not fnmatch.filter(known, pattern):
            raise BMILError(f"--domain_extra: '{pattern}' matches no known domain. Use domain names "
                            f"or globs such as 'point_*'; known: {', '.join(known)}.")
    parsed = {key: split_args(a, "--domain_extra") for key, a in domain_extra.items()}

    def args(domain: str) -> tuple[str, ...]:
        picked = [parsed[key] for key, ps in patterns.items() if any(fnmatch.fnmatch(domain, p) for p in ps)]
        return (*extra, *(arg for a in picked for arg in a))

    return [replace(r, extra=args(r.domain)) for r in runs]


def split_args(text: str, option: str) -> list[str]:
    """Command-line arguments as a shell would split them (quotes group words)."""
    try:
        return shlex.split(text)
    except ValueError as e:
        raise BMILError(f"{option} '{text}': {e}; balance its quotes.") from None


def reproduce(study: str, domains: str = "pickplace,push", seeds: int = 3, jobs: Optional[int] = None,
              out: Optional[str] = None, extra: str = "", domain_extra: Optional[dict[str, str]] = None,
              configs: str = "conf", methods: str = "") -> None:
    """Run a study of the paper as independent ``bmil fit`` runs and tabulate the results.

    Args:
        study: table1, table2, fig5a, fig5b, fig6 or table6.
        domains: Comma-separated environment names (each needs conf/<env>.yaml, conf/<env>_bc.yaml
            and, for table1, conf/<env>_vins.yaml).
        seeds: Seeds 0..seeds-1 per configuration.
        jobs: Runs at once (default: the number of CPU cores).
        out: Study folder (default results/<study>); rerunning skips finished runs.
        extra: Extra ``bmil fit`` arguments for every run, e.g. "--trainer.max_epochs 50".
        domain_extra: Extra ``bmil fit`` arguments for the runs of some domains, after ``extra``:
            {domains: arguments}, domains being comma-separated names or globs, e.g.
            '{"pickplace,push": "--config conf/overlays/fetch_ablation_eval.yaml", "point_*":
            "--config conf/overlays/maze_table1_eval.yaml"}' gives each family of domains its own
            evaluation budget in one study.
        configs: Folder of the runs' configs (<domain>.yaml for BMIL, <domain>_bc.yaml for BC,
            <domain>_vins.yaml for VINS).
        methods: Comma-separated method labels to run now (default: all), e.g. "BC,BMIL" to get
            the cheap columns of table1 before VINS's; the table shows every finished run.
    """
    names = [d.strip() for d in domains.split(",") if d.strip()]
    from bmil.envs import get_domain

    for name in names:
        get_domain(name)  # an unknown name is one clear error before anything runs
    plan = make_study(study, names, list(range(seeds)), configs)
    plan.runs = with_extra(plan.runs, split_args(extra, "--extra"), domain_extra or {})
    chosen = {m.strip() for m in methods.split(",") if m.strip()} or None
    labels = list(dict.fromkeys(r.method for r in plan.runs))
    if chosen and not chosen <= set(labels):
        raise BMILError(f"unknown method(s) {', '.join(sorted(chosen - set(labels)))} for study "
                        f"'{study}'. Its methods: {', '.join(labels)}.")
    folder = Path(out or Path("results") / study)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_study(plan, folder, jobs or os.cpu_count() or 1, methods=chosen)
    path = write_results(plan, folder)
    print(path.read_text())
    print(f"{path} written; this invocation took {time.perf_counter() - t0:.0f} s")
