"""An evaluation's outcome: every start and whether its episode succeeded, the rate (per maze cell
where the domain groups its starts), its 95% interval, and the records written from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bmil.evaluation.statistics import stratified_interval, wilson_interval

if TYPE_CHECKING:
    from bmil.domains import Domain


@dataclass
class EvalResult:
    """Per-start outcomes of an evaluation; ``success[i]`` is the episode started at ``starts[i]``.

    With ``groups`` (the maze cell of every start) the rate is the unweighted mean of the per-group
    rates, as the paper reports mazes, with a stratified 95% interval.
    """

    domain: str
    starts: np.ndarray  # (N, start_dim)
    success: np.ndarray  # (N,) bool
    steps: np.ndarray  # (N,) int, steps each episode ran
    success_mode: str = "final"
    groups: np.ndarray | None = None  # (N,) int group id of every start, or None
    num_groups: int = 0
    flags: dict = field(default_factory=dict)  # name -> (N,) bool: the domain's episode flags at the end

    @classmethod
    def of(cls, domain: "Domain", starts, success, steps, success_mode: str = "final",
           flags: dict | None = None) -> "EvalResult":
        """A result grouped the way ``domain`` groups its starts (per maze cell, or not at all)."""
        return cls(domain.name, starts, success, steps, success_mode, domain.start_groups(starts),
                   domain.num_groups, flags or {})

    @property
    def episodes(self) -> int:
        return len(self.success)

    def group_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(successes, episodes) of every group id 0..num_groups-1."""
        k = self.num_groups
        return (np.bincount(self.groups, weights=self.success, minlength=k).astype(np.int64),
                np.bincount(self.groups, minlength=k))

    def group_rates(self) -> np.ndarray:
        """Success rate of every group (NaN where a group has no episodes)."""
        s, n = self.group_counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    @property
    def rate(self) -> float:
        if not self.episodes:
            return 0.0
        if self.groups is not None:
            return float(np.nanmean(self.group_rates()))
        return float(self.success.mean())

    @property
    def ci(self) -> tuple[float, float]:
        if self.groups is not None:
            return stratified_interval(*self.group_counts())
        return wilson_interval(int(self.success.sum()), self.episodes)

    def summary(self) -> str:
        lo, hi = self.ci
        over = f"over {self.episodes} episodes"
        if self.groups is not None and self.episodes:
            n = self.group_counts()[1]
            used = n[n > 0]
            per = f"{used.min()}" if used.min() == used.max() else f"{used.min()}-{used.max()}"
            over = f"mean over {len(used)} cells ({per} episodes each, {self.episodes} in all)"
        flags = "".join(f"; {name} at the end: {int(v.sum())} ({100 * v.mean():.1f}%)" for name, v in self.flags.items())
        return (
            f"{self.domain}: success {100 * self.rate:.1f}% "
            f"(95% CI {100 * lo:.2f}-{100 * hi:.2f}%) {over} "
            f"[judged at the {'final step' if self.success_mode == 'final' else 'best step'}]{flags}"
        )

    def to_dict(self) -> dict:
        lo, hi = self.ci
        record = {
            "domain": self.domain,
            "episodes": self.episodes,
            "successes": int(self.success.sum()),
            "success_rate": self.rate,
            "ci95": [lo, hi],
            "success_mode": self.success_mode,
        }
        if self.groups is not None:
            s, n = self.group_counts()
            record.update(group_successes=s.tolist(), group_episodes=n.tolist())
        if self.flags:
            record["flags"] = {name: int(v.sum()) for name, v in self.flags.items()}
        return record

    def outcomes(self) -> dict:
        """Every start and its outcome, as JSON lists."""
        return {"starts": self.starts.tolist(), "success": self.success.tolist()}

    def record(self) -> dict:
        """``to_dict`` plus every start and its outcome: what an evaluation's JSON file holds."""
        return {**self.to_dict(), **self.outcomes()}

    def metrics(self, name: str) -> dict[str, float]:
        """The logged scalars: ``name`` (the rate) and its 95% interval as ``name``_ci_low/high."""
        lo, hi = self.ci
        return {name: self.rate, f"{name}_ci_low": lo, f"{name}_ci_high": hi}
