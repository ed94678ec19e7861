"""The settings search (``bmil reproduce search``): on one domain per family, ``bmil tune`` of the
methods whose settings ``bmil reproduce baselines`` layers per family (NoiseBC, CCIL, BMIL), at the
family's short budget (``conf/overlays/search_<family>.yaml``), on validation starts only. Each
method's current family settings (``conf/<method>_<family>.yaml``, where there is one) are its
defaults, so they compete with the tuner's finalists on the same fresh seed and starts; the table
says by how much the tuner's choice differs from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from bmil.errors import BMILError
from bmil.files import write_text
from bmil.studies.catalog import SEARCHED
from bmil.studies.report import markdown

# The family's budget is a fixed fraction of the full training, so the epochs are not searched:
# a choice of epochs at the short budget would say nothing of the full one.
SPACE = {method: {"trainer.max_epochs": None} for method in SEARCHED}
# The recorded search (docs/baselines.md) validated its finalists on 500 starts and its trials on the
# budget's own, not at bmil tune's cheaper defaults.
FINALIST_EPISODES = 500


def search(domains: list[str], seeds: int, jobs: int, out: Path, configs: str = "conf", executor: str = "local",
           ray_address: Optional[str] = None, plan: bool = False) -> Optional[Path]:
    """Tune each domain's family settings; 3 x ``seeds`` trials per method, then its 2 best trials and
    its current settings on one fresh seed: about the grid's 4 candidates x ``seeds`` runs. With
    ``plan``, print each domain's tune plan (what is left, its core-hours) and run nothing."""
    from bmil.domains import get_domain
    from bmil.tuning.tuner import Tuner

    if seeds < 1:
        raise BMILError(f"study 'search': --seeds {seeds}; give at least 1 (3 trials per method per seed).")
    tuners = []
    for name in domains:
        family = get_domain(name).family or name
        budget = Path(configs) / "overlays" / f"search_{family}.yaml"
        if not budget.is_file():
            raise BMILError(f"study 'search': no budget for domain '{name}' (family '{family}'): write {budget} "
                            "(like overlays/search_fetch.yaml there; for an installed bmil, copy its configs, "
                            "shown by bmil configs, into a folder of yours and give it with --configs).")
        current = {m: family_settings(Path(configs) / f"{m}_{family}.yaml") for m in SEARCHED}
        tuners.append(Tuner([str(Path(configs) / f"{name}.yaml"), str(budget)], list(SEARCHED), 3 * seeds, jobs,
                            out / name, finalists=2, finalist_seeds=1, final_seeds=0, space=SPACE, reference=current,
                            executor=executor, ray_address=ray_address, finalist_episodes=FINALIST_EPISODES,
                            trial_episodes=_validation_episodes(budget)))
    if plan:
        for tuner in tuners:
            tuner.plan()
        return None
    try:
        for tuner in tuners:  # (every domain's configs checked before any work)
            tuner.run()
    finally:  # the domains done so far, also when one fails or the search is stopped
        path = write_table(domains, out, tuners[0].finalist_episodes)
    return path


def _validation_episodes(budget: Path) -> Optional[int]:
    return ((yaml.safe_load(budget.read_text()) or {}).get("validation") or {}).get("episodes")


def family_settings(path: Path) -> dict:
    """A family file's settings as ``bmil fit`` keys (``model.init_args.noise.scale`` as
    ``model.noise.scale``); none where there is no file."""
    if not path.is_file():
        return {}
    flat: dict = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{full}.")
            elif not full.endswith("class_path"):
                flat[full.replace("init_args.", "")] = value

    walk(yaml.safe_load(path.read_text()) or {}, "")
    return flat


def write_table(domains: list[str], out: Path, starts: int) -> Path:
    """``table.md``: per domain and method, the current settings' and the tuner's choice's validation
    scores on the fresh seed, the trials and the core-hours."""
    rows = []
    for name in domains:
        path = out / name / "summary.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        for method, choice in summary["chosen"].items():
            current = next(f for f in choice["finalists"] if f["trial"] is None)
            best = max((f for f in choice["finalists"] if f["trial"] is not None), key=lambda f: f["score"])
            counts = summary["trials"][method]
            rows.append([name, method, _settings_text(current["settings"]), f"{100 * current['score']:.1f}",
                         f"{best['trial']}: {_settings_text(best['settings'])}", f"{100 * best['score']:.1f}",
                         f"{100 * (best['score'] - current['score']):+.1f}",
                         "current" if choice["trial"] is None else f"trial {choice['trial']}",
                         f"{counts['complete']}, {counts['pruned']}, {counts['fail']}", f"{_core_hours(out / name, method):.2f}"])
    table = markdown(["domain", "method", "current settings", "their score", "tuner's best finalist", "its score", "difference",
                       "chosen", "trials (done, pruned, failed)", "core-h"], rows)
    text = (f"# search\n\nValidation scores (%): the mean validation robustness over the second half of training, "
            f"on the finalists' fresh seed and {starts} validation starts; no test start is used. The current settings "
            "are conf/<method>_<family>.yaml over the domain's config (the config's own where there is none).\n\n" + table + "\n")
    write_text(out / "table.md", text)
    return out / "table.md"


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {_short(v)}" for k, v in settings.items()) or "defaults"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return value if isinstance(value, str) else json.dumps(value)


def _core_hours(folder: Path, method: str) -> float:
    seconds = 0.0
    for path in (folder / "runs").glob(f"*__{method}_*/version_0/result.json"):
        seconds += json.loads(path.read_text()).get("seconds", 0.0)
    return seconds / 3600


def refuse_other_arguments(**given: Optional[object]) -> None:
    """The search takes no per-run arguments: any would change its budget or give its runs a test."""
    named = [f"--{k}" for k, v in given.items() if v]
    if named:
        raise BMILError(f"study 'search' runs bmil tune at the family's budget and takes no {', '.join(named)}; "
                        "change overlays/search_<family>.yaml in the configs folder (--configs) instead.")
