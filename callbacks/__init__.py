"""Training callbacks referenced from the configs (``callbacks.TrainingSuccess`` etc.)."""

from callbacks.evaluation import Robustness, TrainingSuccess, Validation
from callbacks.progress import EpochProgressBar
from callbacks.tuning import TrialReport

__all__ = ["EpochProgressBar", "Robustness", "TrainingSuccess", "TrialReport", "Validation"]
