"""An evaluation's finished batches kept on disk as they finish, so that a long evaluation stopped
part-way resumes where it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from bmil.evaluation.backends import BatchOutcome
from bmil.files import write_text


class EvalJournal:
    """One JSON line per finished batch after a first line holding the evaluation's key (an ant VINS
    run's final test scores 500 candidate actions at every step of 1,000 episodes). A line is
    appended and flushed to disk as its batch finishes; a line cut short by a kill is ignored. A
    journal with another key (other weights, starts or settings) is started afresh."""

    def __init__(self, path: str | Path, key: dict):
        self.path, self.key = Path(path), key

    def load(self) -> list[BatchOutcome]:
        """The batches kept, starting the file afresh if it is missing, damaged or another
        evaluation's."""
        lines = self.path.read_text().split("\n") if self.path.is_file() else []
        kept = []
        try:
            if json.loads(lines[0]) == {"key": self.key}:
                for line in lines[1:]:
                    row = json.loads(line)
                    kept.append(BatchOutcome(row["batch"], np.array(row["success"], bool),
                                             np.array(row["steps"], np.int64),
                                             {k: np.array(v, bool) for k, v in row["flags"].items()}))
        except (IndexError, ValueError, KeyError, TypeError):
            pass  # no journal, another one, or a last line cut short: keep what parsed
        write_text(self.path, json.dumps({"key": self.key}) + "\n")
        self.append(kept)
        return kept

    def append(self, batches: list[BatchOutcome]) -> None:
        with open(self.path, "a") as f:
            for b in batches:
                f.write(json.dumps({"batch": int(b.batch), "success": b.success.tolist(), "steps": b.steps.tolist(),
                                    "flags": {k: v.tolist() for k, v in b.flags.items()}}) + "\n")
            f.flush()
            os.fsync(f.fileno())
