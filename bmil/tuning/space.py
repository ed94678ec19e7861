"""Search spaces, declared as data beside each method's settings (``search_space`` on the method
class), sampled by Optuna (``suggest``) and narrowed or overridden by the user in YAML (``override``).

A parameter is a ``bmil fit`` setting (``key``, as on the command line without ``--``) with its range:
``low``/``high`` (``log`` for a log scale, ``integer`` for whole numbers) or ``choices``; ``when``
makes it conditional on another parameter's value (SC's coefficient only where the action
selection is SC). Ranges may depend on the task (``Task``: its horizon, its shortest demo, the
config's epochs), so a method declares them as a function of it. A choice may name epochs as
fractions of the trial's own (``{"of_epochs": [0.2, 1]}``: from a fifth of its epochs to its last),
so that a schedule drawn beside ``trainer.max_epochs`` fits the epochs drawn with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from bmil.errors import BMILError


@dataclass(frozen=True)
class Task:
    """What is known of the task when the space is made."""

    horizon: int  # steps per episode
    shortest_demo: int  # transitions of the shortest demonstration
    epochs: int  # the config's trainer.max_epochs
    validation_every: int = 1  # the config's validation.every_n_epochs: a trial must reach a check


@dataclass(frozen=True)
class Param:
    key: str  # the setting, e.g. "model.demo_ratio" or "trainer.max_epochs"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False
    choices: tuple = ()
    when: dict = field(default_factory=dict)  # {other key: [values]}: sampled only then

    def __post_init__(self):
        numeric = self.low is not None and self.high is not None
        if numeric == bool(self.choices):
            raise BMILError(f"search space '{self.key}': give either low and high, or choices.")
        if numeric and not self.low <= self.high:
            raise BMILError(f"search space '{self.key}': low {self.low} is above high {self.high}.")
        repeated = [c for i, c in enumerate(self.choices) if c in self.choices[:i]]  # 1 and 1.0 too
        if repeated:
            raise BMILError(f"search space '{self.key}': the choice {repeated[0]!r} is given twice; give each once.")
        if self.log and numeric and self.low <= 0:
            raise BMILError(f"search space '{self.key}': a log range needs low > 0 (got {self.low}).")

    def sample(self, trial, grid: bool = False) -> Any:
        if grid:  # the grid's values as choices, which Optuna's brute force walks, conditions and all
            value = trial.suggest_categorical(self.key, self.grid())
            return json.loads(value) if self.choices else value
        if self.choices:
            # Optuna stores choices as JSON-able scalars: lists (trace lengths) travel as JSON text.
            labels = [json.dumps(c) for c in self.choices]
            return json.loads(trial.suggest_categorical(self.key, labels))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def grid(self) -> list:
        """The values a grid search takes: the choices, or the range's ends and middle."""
        if self.choices:
            return [json.dumps(c) for c in self.choices]
        middle = (self.low * self.high) ** 0.5 if self.log else (self.low + self.high) / 2
        values = [self.low, int(round(middle)) if self.integer else middle, self.high]
        return list(dict.fromkeys(int(v) if self.integer else float(v) for v in values))


def _active(param: Param, chosen: dict) -> bool:
    return all(chosen.get(key) in values for key, values in param.when.items())


def suggest(trial, space: list[Param], epochs: int, grid: bool = False) -> dict[str, Any]:
    """One setting per parameter whose condition holds, in the space's order (``grid``: from its
    ``Param.grid`` values), fractions of epochs as the epochs they name (``epochs``: the config's,
    where the trial's are not drawn)."""
    chosen: dict[str, Any] = {}
    for param in space:
        if _active(param, chosen):
            chosen[param.key] = param.sample(trial, grid)
    return in_epochs(chosen, epochs)


def at_fixed_epochs(space: list[Param], epochs: int) -> list[Param]:
    """A space that does not draw ``trainer.max_epochs`` with its fractions of epochs as the epochs
    they name: every trial trains ``epochs``, and a study recorded with such epochs stays the same."""
    if any(p.key == "trainer.max_epochs" for p in space):
        return space
    fixed = []
    for param in space:
        choices = tuple(dict.fromkeys(json.dumps(c) for c in in_epochs(dict(enumerate(param.choices)), epochs).values()))
        fixed.append(replace(param, choices=tuple(json.loads(c) for c in choices)) if param.choices else param)
    return fixed


def in_epochs(drawn: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Drawn values with every ``{"of_epochs": [a, b]}`` as epochs of the trial (its drawn
    ``trainer.max_epochs``, else ``epochs``): each fraction of them, rounded down, at least 1."""
    total = drawn.get("trainer.max_epochs", epochs)

    def resolved(value):
        if isinstance(value, dict) and set(value) == {"of_epochs"}:
            return [max(1, int(f * total + 1e-9)) for f in value["of_epochs"]]
        return value

    return {key: resolved(value) for key, value in drawn.items()}


def grid_size(space: list[Param], chosen: Optional[dict] = None) -> int:
    """The grid's distinct settings: a parameter whose condition fails takes no value, so adds none."""
    chosen = chosen or {}
    if not space:
        return 1
    param, rest = space[0], space[1:]
    if not _active(param, chosen):
        return grid_size(rest, chosen)
    values = [json.loads(v) for v in param.grid()] if param.choices else param.grid()
    return sum(grid_size(rest, {**chosen, param.key: value}) for value in values)


def as_overrides(settings: dict[str, Any]) -> list[str]:
    """Settings as ``bmil fit`` arguments, lists as JSON. A null goes as its parent's JSON
    (``--model.traces '{"demo_bounds_margin": null}'``): jsonargparse reads ``null`` given alone
    for an optional number as the string "None"."""
    args = []
    for key, value in settings.items():
        if value is None:
            parent, _, leaf = key.rpartition(".")
            args += [f"--{parent}", json.dumps({leaf: None})]
        else:
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def _typed(key: str, change: dict) -> dict:
    """A YAML change with its numbers as numbers (PyYAML reads 1e-5 as text) and lists as tuples."""
    change = dict(change)
    for bound in ("low", "high"):
        if bound in change:
            try:
                change[bound] = float(change[bound])
            except (TypeError, ValueError):
                raise BMILError(f"search space '{key}': {bound} {change[bound]!r} is not a number.") from None
    if "choices" in change:
        if not isinstance(change["choices"], list) or not change["choices"]:
            raise BMILError(f"search space '{key}': choices must be a list, e.g. [0.5, 0.8].")
        change["choices"] = tuple(change["choices"])
    if "when" in change and not (isinstance(change["when"], dict)
                                 and all(isinstance(v, list) for v in change["when"].values())):
        raise BMILError(f"search space '{key}': when is a mapping of settings to lists of values.")
    return change


def override(space: list[Param], changes: Optional[dict]) -> list[Param]:
    """``space`` with the user's changes for one method: ``{key: {low, high, log, choices, ...}}``
    narrows or replaces a parameter (or adds one), ``{key: null}`` drops it."""
    if not changes:
        return space
    params = {p.key: p for p in space}
    for key, change in changes.items():
        if change is None:
            if key not in params:
                raise BMILError(f"search space: '{key}' is not a parameter to drop; the space has "
                                f"{', '.join(params)}.")
            del params[key]
            continue
        if not isinstance(change, dict):
            raise BMILError(f"search space '{key}': give a mapping such as {{low: 0.5, high: 0.9}} or "
                            f"{{choices: [a, b]}}, or null to drop it (got {change!r}).")
        unknown = set(change) - {"low", "high", "log", "integer", "choices", "when"}
        if unknown:
            raise BMILError(f"search space '{key}': unknown fields {', '.join(sorted(unknown))}; a parameter "
                            "has low, high, log, integer, choices and when.")
        change = _typed(key, change)
        if "choices" in change:
            change = {"low": None, "high": None, **change}
        elif "low" in change or "high" in change:
            change = {"choices": (), **change}
        params[key] = replace(params[key], **change) if key in params else Param(key, **change)
    return list(params.values())
