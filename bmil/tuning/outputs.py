"""What a tune leaves for its user: ``tuned_<method>.yaml`` overlays, ``table.md``, figures and
TensorBoard scalars of every trial."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from bmil.evaluation.statistics import t_interval
from bmil.files import write_text
from bmil.lightning_cli import TUNED_TASK
from bmil.methods import Method, get_method
from bmil.runs.folder import RunFolder


def write_overlay(path: Path, method: Method, choice: dict, task: dict) -> None:
    """``tuned_<method>.yaml``: the method and its chosen settings, layered over the user's config;
    it names the ``task`` it was tuned on (``bmil fit`` refuses it over another one)."""
    nested: dict = {"model": {"class_path": method.class_path, "init_args": {}}}
    for key, value in choice["settings"].items():
        head, *rest = key.split(".")
        node = nested["model"]["init_args"] if head == "model" else nested.setdefault(head, {})
        for name in rest[:-1]:
            node = node.setdefault(name, {})
        node[rest[-1]] = value
    source = "the defaults: no trial beat them on fresh seeds" if choice["trial"] is None else f"trial {choice['trial']}"
    header = (f"# bmil tune: {method.label}'s settings chosen on validation starts ({source}; "
              f"validation {100 * choice['score']:.1f}%).\n# Use: bmil fit --config <your config> --config {path.name}\n"
              f"{TUNED_TASK}{json.dumps(task)}\n")
    write_text(path, header + yaml.safe_dump(nested, sort_keys=False))


def counts(study) -> dict:
    from optuna.trial import TrialState

    return {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}


def mean_ci(values: list[float]) -> str:
    """Mean ± the 95% t-interval's half-width over seeds, in %."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, half = t_interval(values)
    return f"{100 * mean:.1f} ± {100 * half:.1f}" if len(values) > 1 else f"{100 * mean:.1f}"


def table(summary: dict) -> str:
    rows = ["| method | trials (done, pruned, failed) | chosen trial | validation | test: tuned | test: defaults |",
            "| --- | --- | --- | --- | --- | --- |"]
    for method, choice in summary["chosen"].items():
        counts, final = summary["trials"][method], summary["final"].get(method, {})
        mark = " (winner)" if method == summary["winner"] else ""
        trial = "defaults" if choice["trial"] is None else choice["trial"]
        rows.append(f"| {get_method(method).label}{mark} | {counts['complete']}, {counts['pruned']}, {counts['fail']} | "
                    f"{trial} | {100 * choice['score']:.1f} | {mean_ci([r['test'] for r in final.get('tuned', [])])} | "
                    f"{mean_ci([r['test'] for r in final.get('defaults', [])])} |")
    seeds = len(next(iter(summary["final"].values()), {}).get("tuned", []))
    saved = [(m, p) for m, p in summary["pruning"].items() if p["to_the_end_core_hours"]]
    rows += [""] + [f"Pruning ({get_method(m).label}): the pruned trials took {p['pruned_core_hours']:.2f} core-hours; run to "
                    f"the end they would have taken about {p['to_the_end_core_hours']:.2f} (saved "
                    f"{p['saved_core_hours']:.2f})." for m, p in saved]
    skipped = {stage: s for stage, s in summary.get("skipped_checks", {}).items() if s["checks"]}
    if skipped:
        rows += ["", "Validation checks no decision reads, skipped: " + "; ".join(
            f"{stage} {s['checks']} (about {s['core_hours']:.2f} core-hours)" for stage, s in skipped.items()) + "."]
    test = (f"Robustness (%) on the test starts, the best policy by validation, mean ± 95% t-interval over {seeds} seeds"
            if seeds else "No final test (final seeds 0)")
    return f"{test}; validation: the chosen settings' score on validation starts.\n\n" + "\n".join(rows) + "\n"


def validation_against_test(final: dict, out: Path) -> Path:
    """Every final run's best policy: its validation rate against its test robustness."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for method, kinds in final.items():
        for kind, marker in (("tuned", "o"), ("defaults", "x")):
            points = [(r["validation"], r["test"]) for r in kinds[kind] if r["validation"] is not None]
            if points:
                ax.scatter(*zip(*points), marker=marker, label=f"{get_method(method).label} {kind}")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set(xlabel="validation (best check)", ylabel="test robustness", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "validation_vs_test.png")
    plt.close(fig)
    return out / "validation_vs_test.png"


def tensorboard(studies: dict, figures: list[Path], out: Path) -> None:
    """``tensorboard --logdir <out>/tensorboard``: every finished trial's score by trial number, and
    the figures as images."""
    import matplotlib.image
    from optuna.trial import TrialState
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        for method, study in studies.items():
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                writer.add_scalar(f"tune/{method}/validation", t.value, t.number)
        for path in figures:
            image = matplotlib.image.imread(path)[..., :3]
            writer.add_image(f"tune/{path.stem}", image, 0, dataformats="HWC")


def figures(studies: dict, out: Path) -> list[Path]:
    """Optimization history and parameter importances per method (PNG)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as views
    from optuna.trial import TrialState

    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib views experimental
        for method, study in studies.items():
            views.plot_optimization_history(study)
            paths.append(out / f"history_{method}.png")
            plt.gcf().savefig(paths[-1], bbox_inches="tight")
            plt.close("all")
            if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) > 1:
                views.plot_param_importances(study)
                paths.append(out / f"importances_{method}.png")
                plt.gcf().savefig(paths[-1], bbox_inches="tight")
                plt.close("all")
    return paths


STAGE_OF = {"trial": "trials", "finalist": "finalists", "final": "final runs"}


def _finished_fits(out: Path):
    """(stage, run folder) of every finished fit of a tune's stages in ``out``."""
    for path in (out / "runs").glob("*/version_0/result.json"):
        folder = RunFolder(path.parent)
        stage = STAGE_OF.get(folder.stage()[0])
        if stage:
            yield stage, folder


def core_hours(out: Path) -> dict[str, float]:
    """What each stage's finished fits in ``out`` cost, in core-hours (each fit runs on one core), and in all."""
    spent = dict.fromkeys(STAGE_OF.values(), 0.0)
    for stage, folder in _finished_fits(out):
        spent[stage] += folder.result(f"delete {folder.path} to run it again")["seconds"] / 3600
    return {**spent, "total": sum(spent.values())}


def skipped_checks(out: Path) -> dict[str, dict]:
    """The validation checks each stage's finished fits skipped (``validation.after_epoch``: those
    no decision reads) and about what they would have cost: each fit's skipped checks at the mean
    time of the checks it ran (a lower bound: early policies fail more, and failures run longer).
    A fit with no timed check (none ran, or made before checks were timed) counts no time; one with no
    config.yaml (it never started) counts nothing."""
    skipped = {stage: {"checks": 0, "core_hours": 0.0} for stage in STAGE_OF.values()}
    for stage, folder in _finished_fits(out):
        config = folder / RunFolder.CONFIG
        if not config.is_file():
            continue
        validation = (yaml.safe_load(config.read_text()) or {}).get("validation") or {}
        every, after = validation.get("every_n_epochs", 0), validation.get("after_epoch", 0)
        if every <= 0 or after <= 0:
            continue
        n = after // every  # the checks at every multiple of every_n_epochs up to after_epoch
        clock = folder / RunFolder.VALIDATION_CLOCK
        timed = json.loads(clock.read_text()).get("seconds", []) if clock.is_file() else []
        skipped[stage]["checks"] += n
        skipped[stage]["core_hours"] += n * sum(timed) / len(timed) / 3600 if timed else 0.0
    return skipped
