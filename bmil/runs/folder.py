"""A run folder and every file in it: the one place their names are spelled. A leaf below the
training layer (the fit writes these files) and everything that launches fits (which reads them)."""

from __future__ import annotations

from pathlib import Path

from bmil.files import read_record


class RunFolder:
    """``<out>/runs/<run id>/version_0`` for a study's or tune's run (``of``), or any fit's logger
    folder. Its files:"""

    SETTINGS = "run.yaml"  # the launcher's: the run's resolved settings, the one config its fit is started with
    CONFIG = "config.yaml"  # the settings the fit ran with (LightningCLI's own dump)
    IDENTITY = "signature.json"  # the launcher's: the run's settings signature and its identity
    RESULT = "result.json"  # the fit's record when it ends: it marks the run finished
    CLOCK = "elapsed.json"  # wall time over every invocation
    STARTS = "run.json"  # one entry per start of the fit, with what its digits depend on
    VALIDATION = "validation.json"  # every validation check and the best
    VALIDATION_CLOCK = "validation_seconds.json"  # each check's wall time (apart: validation.json repeats)
    PRUNED = "pruned.json"  # a tune's trial stopped by the pruner: where
    LOCK = "run.lock"  # held by the fit while it runs
    LOG = "fit.log"  # the fit's output, where a launcher kept it
    LAST_CKPT, BEST_CKPT = "last.ckpt", "best.ckpt"  # in checkpoints/: every epoch's, the best by validation
    # What a finished run keeps in git (docs/reproducing.md), copied when another study reuses it;
    # the result, which marks the run finished, last.
    RECORDS = (IDENTITY, CONFIG, STARTS, CLOCK, "robustness_final.json", "robustness_best.json", VALIDATION, RESULT)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, out: str | Path, run_id: str) -> "RunFolder":
        return cls(Path(out) / "runs" / run_id / "version_0")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / self.LAST_CKPT

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / self.BEST_CKPT

    def policy_ckpt(self) -> Path:
        """The run's policy to use: the best by validation where it kept one, else the last."""
        return self.best_ckpt if self.best_ckpt.is_file() else self.last_ckpt

    @staticmethod
    def robustness_name(tag: str) -> str:
        """The final test's record: ``final`` (the last policy) or ``best`` (the best by validation)."""
        return f"robustness_{tag}.json"

    @staticmethod
    def journal_name(tag: str) -> str:
        """The final test's finished batches, kept until its record is written."""
        return f"robustness_{tag}.journal"

    def is_done(self) -> bool:
        return (self.path / self.RESULT).is_file()

    def result(self, fix: str) -> dict:
        """The finished run's record (``fix``: how to mend a damaged one)."""
        return read_record(self.path / self.RESULT, fix)

    def stage(self) -> tuple[str, dict]:
        """The stage and tags its launcher gave the run ("" where none)."""
        path = self.path / self.IDENTITY
        record = read_record(path, f"delete {self.path} to run it again") if path.is_file() else {}
        return record.get("stage", ""), record.get("tags", {})

    def pruned(self) -> dict | None:
        """Where the pruner stopped the run (epoch, validation rate), or None."""
        path = self.path / self.PRUNED
        return read_record(path, f"delete {self.path} to run the trial again") if path.is_file() else None
