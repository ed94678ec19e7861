"""The seam every study and tune runs its fits through."""

from __future__ import annotations

from concurrent.futures import as_completed


class Executor:
    """The seam: ``submit(out, run)`` returns a future of the run's result; ``stop`` ends what runs
    (the runs resume from their checkpoints); ``close`` waits for the rest. As a context manager it
    stops on an error (Ctrl-C, SIGTERM, a failure) and closes always."""

    def submit(self, out, run):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def wait_any(futures):
        return next(as_completed(futures))

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:
            self.stop()
        self.close()
