"""The studies: the paper's comparisons as lists of runs (domain x method x seed), each a stack of
configs plus overrides (docs/reproducing.md). Nothing here runs anything.

  table1  BC, VINS and BMIL on every domain with the original's hyper-parameters
  table2  BMIL with a backwards vs a forward model
  fig5a   trace action selection: none, RS(b), SC(c)
  fig5b   number of demonstrations (BC and BMIL)
  fig6    BC with 1x-20x the policy steps
  table6  model first, then policy vs alternating (Algorithm 1)
  stability  what calms BMIL's robustness from epoch to epoch (EMA, LR decay, kept traces, ...)
  selection  BC and BMIL as a user gets them: the last and the best-by-validation policy
  baselines  BC, NoiseBC, CCIL, VINS and BMIL on one protocol (issue 29), each with its family's
             settings (conf/<method>_<family>.yaml) where the search chose them

``search``, the settings search behind those, is not a list of runs: it runs ``bmil tune`` per family
(``bmil/studies/search.py``).

Add a study: a name in ``STUDIES`` and its runs in ``make_study``.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from bmil.domains import domain_names, get_domain
from bmil.errors import BMILError
from bmil.methods import get_method
from bmil.runs.run import Run


@dataclass
class Study:
    name: str
    runs: list[Run]
    baseline: str = "BC"  # ratios are to this method ("" for none)
    plot: str = ""  # "bar" (methods) or "line" (x axis), for the ablation figure
    xlabel: str = ""


# The table studies: (row label, method, ``bmil fit`` overrides).
TABLES = {
    "table1": [("BC", "bc", ()), ("VINS", "vins", ()), ("BMIL", "bmil", ())],
    "table2": [("BC", "bc", ()), ("BMIL (forwards)", "bmil", ("--model.traces.source", "forward")),
               ("BMIL (backwards)", "bmil", ())],
    # Issue 25: what calms BMIL's epoch-to-epoch swings (docs/stability.md).
    "stability": [("BC", "bc", ()), ("BMIL", "bmil", ()),
                  ("BMIL EMA", "bmil", ("--model.policy.ema_decay", "0.999")),
                  ("BMIL LR decay", "bmil", ("--model.policy.lr_decay_epochs", "100")),
                  ("BMIL keep traces", "bmil", ("--model.traces.keep_epochs", "10")),
                  ("BMIL demo box", "bmil", ("--model.traces.demo_bounds_margin", "0.1"))],
    # The configs as they are (validation on by default for Fetch): the last and the best policy.
    "selection": [("BC", "bc", ()), ("BMIL", "bmil", ())],
    # Issue 29: the methods that compete with BMIL, each on the domain's demos and policy budget.
    "baselines": [("BC", "bc", ()), ("NoiseBC", "noise_bc", ()), ("CCIL", "ccil", ()), ("VINS", "vins", ()),
                  ("BMIL", "bmil", ())],
    "table6": [("BC", "bc", ()), ("BMIL (model first)", "bmil", ("--model.model.schedule", "first")),
               ("BMIL (alternating)", "bmil", ())],
}
STUDIES = ("table1", "table2", "fig5a", "fig5b", "fig6", "table6", "stability", "selection", "baselines")

# The methods whose settings the search (bmil reproduce search: bmil tune per family) chooses per
# domain family, in conf/<method>_<family>.yaml.
SEARCHED = ("noise_bc", "ccil", "bmil")


def method_configs(configs: str, domain: str, method: str, tuned: bool = False) -> tuple[str, ...]:
    """A method on a domain: the domain's config (BMIL), then the method's layer over it; with
    ``tuned``, then the settings the search chose for the domain's family, where it chose some
    (``<method>_<family>.yaml``, e.g. conf/noise_bc_fetch.yaml; searched methods only: VINS's
    family files, such as conf/vins_fetch.yaml, are already under its domain file)."""
    layer = get_method(method).config_layer(domain)
    family = get_domain(domain).family if tuned and method in SEARCHED else ""
    if family and (Path(configs) / f"{method}_{family}.yaml").is_file():
        layer = (*layer, f"{method}_{family}.yaml")
    return tuple(str(Path(configs) / name) for name in (f"{domain}.yaml", *layer))


def make_study(name: str, domains: list[str], seeds: list[int], configs: str = "conf") -> Study:
    """The runs of a named study over ``domains`` and ``seeds``, from the configs in ``configs``."""

    def conf(domain: str, method: str = "bmil") -> tuple[str, ...]:
        return method_configs(configs, domain, method, tuned=name == "baselines")

    if name in TABLES:  # one row per method, each a config stack and its overrides
        return Study(name, [Run(d, label, s, conf(d, method), overrides)
                            for d in domains for s in seeds for label, method, overrides in TABLES[name]])
    runs: list[Run] = []
    add = runs.append
    if name == "fig5a":
        choices = [("None", "none", 0.0), ("RS(0.5)", "rs", 0.5), ("RS(1)", "rs", 1.0),
                   ("SC(10)", "sc", 10.0), ("SC(30)", "sc", 30.0), ("SC(50)", "sc", 50.0)]
        for d in domains:
            for s in seeds:
                for label, strategy, coef in choices:
                    add(Run(d, label, s, conf(d), ("--model.traces.action_selection", strategy,
                                                   "--model.traces.selection_coef", str(coef))))
        return Study(name, runs, baseline="None", plot="bar", xlabel="action selection")
    if name == "fig5b":
        for d in domains:
            for s in seeds:
                for n in (1, 2, 5, 10, 20):
                    demos = ("--model.demos.num", str(n))
                    add(Run(d, f"BC {n} demos", s, conf(d, "bc"), demos, x=n, family="BC"))
                    add(Run(d, f"BMIL {n} demos", s, conf(d), demos, x=n, family="BMIL"))
        return Study(name, runs, baseline="", plot="line", xlabel="demonstrations")
    if name == "fig6":
        for d in domains:
            for s in seeds:
                bc = Run(d, "BC", s, conf(d, "bc"))
                steps_per_epoch = bc.settings["model"]["init_args"]["policy"]["steps_per_epoch"]
                for mult in (1, 2, 5, 10, 20):
                    # More steps per epoch, same epochs: the evaluation schedule stays comparable.
                    steps = ("--model.policy.steps_per_epoch", str(mult * steps_per_epoch))
                    add(Run(d, f"BC {mult}x", s, conf(d, "bc"), steps, x=mult, family="BC"))
                add(Run(d, "BMIL", s, conf(d)))
        return Study(name, runs, baseline="BC 1x", plot="line", xlabel="BC policy steps (x the original)")
    raise BMILError(f"unknown study '{name}'. Studies: {', '.join((*STUDIES, 'search'))}.")


def with_extra(runs: list[Run], extra: list[str], domain_extra: dict[str, str]) -> list[Run]:
    """``runs`` with ``extra`` and then the ``domain_extra`` arguments of every key their domain
    matches (in the given order). A key is comma-separated domain names or globs ("pickplace,push",
    "point_*"); each must match some known domain (a typo is an error), but not necessarily one of
    this study's, so one mapping serves studies over any subset of the domains."""
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


