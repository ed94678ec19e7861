"""What each stage of a tune evaluates: every fit trains to its own end, and evaluates only what
the stage reads. A trial reports its checks to the pruner and is scored on the second half of them;
a finalist is scored on the second half; a final run reports its best policy's test. Skipped: the
training starts' success (no stage reads it), a trial's checks before its pruner's first, a
finalist's before the second half, and the test starts in trials and finalists (never seen before
the final runs), in final runs but for the best policy's final test."""

from __future__ import annotations

from typing import Optional

from bmil.tuning.storage import warmup_epochs

NO_TEST = ("--robustness.every_n_epochs", "0", "--robustness.final_episodes", "0")  # trials and finalists
UNREAD = ("--training_success.every_n_epochs", "0")  # every fit of a tune
FINAL_TEST_ONLY = ("--robustness.every_n_epochs", "0", "--robustness.test_last", "false")  # final runs


def first_pruned_epoch(config_epochs: int, every: int) -> int:
    """Successive halving's first rung: the first check after a quarter of the config's epochs,
    the same epoch for every trial (trials of other lengths compare there)."""
    return (warmup_epochs(config_epochs) // every + 1) * every


def unpruned_epochs(pruner: str, epochs: int, config_epochs: int, every: int) -> int:
    """The epochs whose checks a trial of ``epochs`` skips: its pruner reads none there (nor does
    its score, which reads the second half)."""
    return warmup_epochs(epochs) if pruner == "median" else first_pruned_epoch(config_epochs, every) - 1


def unscored_epochs(epochs: int, every: int) -> int:
    """The epochs whose checks a finalist's score (``validation_late``) does not read: the first
    half of those up to its last check."""
    return (epochs // every * every) // 2


def stage_episodes(config_episodes: int, trial: Optional[int], finalist: Optional[int]) -> tuple[int, int]:
    """The validation starts of a trial's and a finalist's checks, where not given: half the config's
    and all of them. Fidelity rises by stage: a trial's score only ranks it for the finalists, whose
    fresh runs decide, and a finalist's averages several checks, where one seed's training noise
    outweighs the sampling noise of the config's starts (docs/tuning.md)."""
    return trial or max(1, config_episodes // 2), finalist or config_episodes
