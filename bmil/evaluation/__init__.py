"""Evaluation, which knows nothing of Lightning: ``rollout`` (episodes in lockstep), ``result``
(``EvalResult``), ``statistics`` (intervals), ``backends`` (worker processes or Ray tasks),
``journal`` (an evaluation resumed batch by batch) and ``evaluator`` (``Evaluator.run``, the one
evaluation path of the callbacks, ``bmil evaluate``, ``validate`` and ``test``)."""

from bmil.evaluation.backends import check_worker
from bmil.evaluation.evaluator import Evaluator, Shard
from bmil.evaluation.result import EvalResult
from bmil.evaluation.rollout import RandomPolicy, Rollout, episode_seed, run_episodes
from bmil.evaluation.statistics import stratified_interval, t_interval, wilson_interval

__all__ = ["EvalResult", "Evaluator", "RandomPolicy", "Rollout", "Shard", "check_worker", "episode_seed",
           "run_episodes", "stratified_interval", "t_interval", "wilson_interval"]
