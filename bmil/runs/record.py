"""A run's completion record, written by the fit itself: ``result.json`` in its run folder, atomically,
when training ends (not when it is stopped). Whoever launched the fit (a local process, a Ray task)
only reads it, so every executor gives the same record. The launcher may leave the run's identity
in ``signature.json`` beforehand (a study's domain, row label, seed and settings signature), which
the record repeats. ``elapsed.json`` keeps the run's wall time over all its invocations.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Optional

from bmil.errors import BMILError
from bmil.files import damaged, read_record, write_record
from bmil.runs.folder import RunFolder

CLOCK_EVERY_S = 60.0
COMMAND_STARTED: Optional[float] = None  # set by the ``bmil`` command as it starts (bmil/cli.py)


class RunClock:
    """A run's wall time over every invocation of its fit, kept in ``elapsed.json``: rewritten every
    ``CLOCK_EVERY_S`` seconds while the fit runs, so a kill loses at most that much, and counted from
    the earlier invocations' time only when the fit resumes their checkpoint."""

    def __init__(self, folder: Path, resumed: bool, started: Optional[float] = None):
        self.path = Path(folder) / RunFolder.CLOCK
        self.before = self._read(self.path) if resumed and self.path.is_file() else 0.0
        self.t0 = time.perf_counter() if started is None else started
        self.seconds = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    @staticmethod
    def _read(path: Path) -> float:
        fix = "delete it, which resumes the run with its clock at zero, so its 'seconds' undercount"
        seconds = read_record(path, fix).get("seconds")
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if number and math.isfinite(seconds) and seconds >= 0:
            return float(seconds)
        raise damaged(path, f"'seconds' is {seconds!r}, not a number of seconds", fix)

    def write(self) -> None:
        self.seconds = self.before + time.perf_counter() - self.t0
        write_record(self.path, {"seconds": self.seconds}, indent=1)

    def _tick(self) -> None:
        while not self._stop.wait(CLOCK_EVERY_S):
            self.write()

    def __enter__(self) -> "RunClock":
        self.write()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.write()


def write_identity(folder: Path, signature: str, identity: dict, stage: str = "", tags: dict | None = None) -> None:
    """Before a fit starts: what a study's record says of the run besides its outcomes, and the stage
    and tags its launcher finds it by."""
    record = {"signature": signature, "run": identity, **({"stage": stage, "tags": tags or {}} if stage else {})}
    write_record(Path(folder) / RunFolder.IDENTITY, record, indent=1)


def write_result(folder: Path, seconds: float, resumed: bool) -> dict:
    """The record of a finished fit, from what it left in ``folder``: its identity (where a study
    gave one), the final test, the last training success, the time, the validation and the
    numerics; written atomically, last, since it marks the run finished."""
    folder = Path(folder)
    identity_path = folder / RunFolder.IDENTITY
    given = read_record(identity_path, f"delete {folder} to run it again") if identity_path.is_file() else {}
    identity = dict(given.get("run", {}))
    result = {**identity, **_test_result(folder), "training_success": _last_scalar(folder, "eval/training_success"),
              "seconds": seconds, "resumed": resumed, "extra": identity.get("extra", ""),
              "signature": given.get("signature"), **_validation_result(folder), "numerics": _numerics(folder)}
    write_record(folder / RunFolder.RESULT, result, indent=1)
    return result


def _test_result(folder: Path) -> dict:
    """The final test of the last policy; None where the run skipped it (a tune's trial,
    ``robustness.final_episodes 0``, never touches the test starts)."""
    path = folder / RunFolder.robustness_name("final")
    if not path.is_file():
        return {"robustness": None, "robustness_ci_low": None, "robustness_ci_high": None, "episodes": 0}
    final = json.loads(path.read_text())
    return {"robustness": final["success_rate"], "robustness_ci_low": final["ci95"][0],
            "robustness_ci_high": final["ci95"][1], "episodes": final["episodes"], **_flag_rates(final)}


def _validation_result(folder: Path) -> dict:
    """What the run's validation gave, where it validated: ``validation_late``, the mean validation
    robustness over the checks in the second half of training (a tune's score: a run's typical
    level late in training, which neither one lucky check nor one collapse decides); and the test
    of the policy chosen on validation starts, where the run kept one."""
    path = folder / RunFolder.VALIDATION
    if not path.is_file():
        return {}
    validation = json.loads(path.read_text())
    history, result = validation["history"], {}
    if history:
        late = [h["rate"] for h in history if h["epoch"] > history[-1]["epoch"] / 2]
        result.update(validation_late=sum(late) / len(late), validation_checks=len(late))
    best_path = folder / RunFolder.robustness_name("best")
    if best_path.is_file():
        best = json.loads(best_path.read_text())
        result.update(best_robustness=best["success_rate"], best_robustness_ci_low=best["ci95"][0],
                      best_robustness_ci_high=best["ci95"][1], best_epoch=validation["best_epoch"],
                      best_validation=validation["best_rate"])
    return result


def _numerics(folder: Path) -> Optional[dict]:
    """What the run's digits depend on (its last start's CPU, kernels and numeric pins: run.json)."""
    path = folder / RunFolder.STARTS
    return read_record(path, f"delete {folder} to run it again")["starts"][-1]["numerics"] if path.is_file() else None


def _flag_rates(final: dict) -> dict:
    """The share of the final test's episodes that ended with each of the domain's flags
    (``flag_flipped`` for the ant)."""
    return {f"flag_{name}": count / final["episodes"] for name, count in final.get("flags", {}).items()}


def _last_scalar(folder: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    if tag not in events.Tags()["scalars"]:
        return math.nan
    return float(events.Scalars(tag)[-1].value)


def read_starts(folder: Path) -> list:
    """The entries of a run folder's ``run.json`` (one per start of the fit; none in a new folder)."""
    path = Path(folder) / RunFolder.STARTS
    try:
        return list(json.loads(path.read_text())["starts"]) if path.is_file() else []
    except (ValueError, KeyError, TypeError) as e:
        raise BMILError(f"{path} is damaged ({type(e).__name__}: {e}); it only records the run's starts: delete "
                        "it and run the command again.") from None
