"""Reporting a study: ``results.csv`` (one row per finished run), ``table.md`` (robustness mean +-
95% t-interval over seeds per method and domain, ratios to the baseline, training success, and
the paper's numbers beside ours; for runs that validated, the same for the policy chosen on
validation starts and the per-seed numbers), for ablations a PNG, and for runs that validated
their validation curves (``curves/<domain>__<method>.png``, seeds overlaid)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from bmil.evaluation.result import EvalResult
from bmil.evaluation.statistics import t_interval
from bmil.studies.catalog import Study
from bmil.runs.folder import RunFolder
from bmil.runs.launch import result_of

def collect(study: Study, out: Path) -> list[dict]:
    """The results of the study's finished runs, in study order."""
    return [result_of(out, r) for r in study.runs if r.folder(out).is_done()]


def flags_table(rows: list[dict]) -> str:
    """Per domain and method whose runs count flags, the mean over seeds of the % of final-test
    episodes ending with each flag (the runs' ``flag_<name>`` rates); "" when no run has flags."""
    rows = [r for r in rows if any(key.startswith("flag_") for key in r)]
    keys = sorted({key for r in rows for key in r if key.startswith("flag_")})
    if not keys:
        return ""
    body = []
    for domain, method in dict.fromkeys((r["domain"], r["method"]) for r in rows):
        runs = [r for r in rows if (r["domain"], r["method"]) == (domain, method)]
        cells = []
        for key in keys:
            values = [r[key] for r in runs if key in r]
            cells.append(f"{100 * np.mean(values):.1f}" if values else "-")
        body.append([domain, method, *cells])
    return markdown(["domain", "method", *[f"{key[5:]} at the end (%)" for key in keys]], body)


def write_csv(rows: list[dict], path: Path) -> None:
    columns = ["run_id", "domain", "method", "seed", "x", "robustness", "robustness_ci_low",
               "robustness_ci_high", "episodes", "training_success", "seconds", "config", "overrides",
               "extra", "best_robustness", "best_robustness_ci_low", "best_robustness_ci_high", "best_epoch",
               "best_validation", "validation_late", "validation_checks"]
    columns += sorted({key for row in rows for key in row if key.startswith("flag_")})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summarize(study: Study, rows: list[dict]) -> dict:
    """{(domain, method): {"robustness": (mean, hw), "training": mean, "seeds": n}} in %."""
    table: dict = {}
    for key in dict.fromkeys((r["domain"], r["method"]) for r in rows):
        values = [r for r in rows if (r["domain"], r["method"]) == key]
        table[key] = {"robustness": t_interval([100 * r["robustness"] for r in values]),
                      "training": float(np.mean([r["training_success"] for r in values])),
                      "seeds": len(values)}
    return table


def markdown(head: list[str], body: list[list[str]]) -> str:
    """A Markdown table: a header row, its rule, then the body rows."""
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, ["---"] * len(head), *body])


def markdown_table(study: Study, rows: list[dict]) -> str:
    """Domains as rows, methods as columns: robustness mean +- 95% t-interval over seeds (%), the
    ratio of each method's mean to the baseline's, and mean training success."""
    table = summarize(study, rows)
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    others = [m for m in methods if m != study.baseline] if study.baseline in methods else []
    head = ["domain", *methods, *[f"{m} / {study.baseline}" for m in others],
            *[f"train. success {m}" for m in methods]]
    body = []
    for d in domains:
        cells = [d]
        for m in methods:
            entry = table.get((d, m))
            if entry is None:
                cells.append("-")
                continue
            mean, hw = entry["robustness"]
            cells.append(f"{mean:.1f} ± {hw:.1f} (n={entry['seeds']})" if not math.isnan(hw)
                         else f"{mean:.1f} (n=1)")
        base = table.get((d, study.baseline))
        for m in others:
            entry = table.get((d, m))
            ok = entry and base and base["robustness"][0] > 0
            cells.append(f"{entry['robustness'][0] / base['robustness'][0]:.2f}" if ok else "-")
        for m in methods:
            entry = table.get((d, m))
            measured = entry and not math.isnan(entry["training"])  # NaN: no check ran
            cells.append(f"{entry['training']:.2f}" if measured else "-")
        body.append(cells)
    return markdown(head, body)


def core_hours_table(rows: list[dict]) -> str:
    """Core-hours per domain and method (the sum over seeds of each run's wall time: a study's run
    holds one core), and per method over all domains."""
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def hours(runs: list[dict]) -> str:
        return f"{sum(r['seconds'] for r in runs) / 3600:.2f}" if runs else "-"

    body = [[d, *[hours([r for r in rows if (r["domain"], r["method"]) == (d, m)]) for m in methods]]
            for d in domains]
    body.append(["all", *[hours([r for r in rows if r["method"] == m]) for m in methods]])
    return markdown(["domain", *methods], body)


def plot_study(study: Study, rows: list[dict], path: Path) -> None:
    """Bar chart (methods) or line chart (x axis) of robustness with 95% t-intervals, per domain."""
    from bmil.plots import plt

    table = summarize(study, rows)
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    fig, axes = plt.subplots(1, len(domains), figsize=(4.5 * len(domains), 3.5), dpi=120, squeeze=False)
    for ax, d in zip(axes[0], domains):
        # One point per method: (family, x, mean, half-width).
        points = {r["method"]: (r["family"] or r["method"], r["x"], *table[(d, r["method"])]["robustness"])
                  for r in rows if r["domain"] == d}
        # Every seed as a dot: with 3 seeds the interval alone hides how the runs spread.
        seeds = [(r["method"], r["x"], 100 * r["robustness"]) for r in rows if r["domain"] == d]
        if study.plot == "bar":
            _, _, means, errs = zip(*points.values())
            ax.bar(list(points), means, yerr=np.nan_to_num(errs), capsize=3, color="tab:blue", alpha=0.6)
            ax.scatter([list(points).index(m) for m, _, _ in seeds], [v for *_, v in seeds],
                       s=12, color="black", zorder=3, label="seeds")
            ax.tick_params(axis="x", rotation=30)
        else:
            colors = _lines(ax, list(points.values()))
            family = {r["method"]: r["family"] or r["method"] for r in rows}
            dots = [(x, v, colors[family[m]]) for m, x, v in seeds if x is not None]
            if dots:  # each seed in its line's colour
                xs, vs, cs = zip(*dots)
                ax.scatter(xs, vs, s=10, c=list(cs), alpha=0.6, zorder=3)
        ax.set(title=d, xlabel=study.xlabel, ylabel="robustness (%)", ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _lines(ax, points: list[tuple]) -> dict:
    """One line per family over x; a family without x values (a reference) is a dashed level.
    Returns each family's colour."""
    colors = {}
    for family in dict.fromkeys(p[0] for p in points):
        mine = sorted((p for p in points if p[0] == family), key=lambda p: p[1] or 0)
        _, xs, means, errs = zip(*mine)
        if xs[0] is None:
            colors[family] = ax.axhline(means[0], ls="--", color="gray", label=family).get_color()
        else:
            line = ax.errorbar(xs, means, yerr=np.nan_to_num(errs), marker="o", capsize=3, label=family)
            colors[family] = line.lines[0].get_color()
    ax.set_xscale("log")
    ticks = sorted({p[1] for p in points if p[1] is not None})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    return colors


# The paper's robustness (%) under our method labels: its Table 1 and Table 2. Its point agent and
# its Ant and Adroit experts differ from ours (docs/reproducing.md).
PAPER = {
    "table1": {
        "push": {"BC": 12.1, "VINS": 12.8, "BMIL": 14.6},
        "pickplace": {"BC": 4.1, "VINS": 3.4, "BMIL": 17.5},
        "point_umaze": {"BC": 49.0, "VINS": 39.5, "BMIL": 47.8},
        "point_room5x11": {"BC": 36.8, "VINS": 17.3, "BMIL": 38.6},
        "point_corridor7x7": {"BC": 33.7, "VINS": 37.7, "BMIL": 38.9},
        "ant_umaze": {"BC": 63.0, "VINS": 44.7, "BMIL": 64.8},
        "ant_room5x11": {"BC": 33.2, "VINS": 30.2, "BMIL": 29.1},
        "ant_corridor7x7": {"BC": 21.7, "VINS": 19.6, "BMIL": 17.6},
        "relocate": {"BC": 7.9, "VINS": 3.8, "BMIL": 13.3},
    },
    "table2": {
        "push": {"BC": 12.1, "BMIL (forwards)": 12.4, "BMIL (backwards)": 14.6},
        "pickplace": {"BC": 4.1, "BMIL (forwards)": 4.1, "BMIL (backwards)": 17.5},
    },
}


def paper_table(study: Study, domains: list[str]) -> str:
    """The paper's numbers for ``domains`` in the layout of ``markdown_table`` ("" if it has none)."""
    paper = PAPER.get(study.name, {})
    known = [d for d in domains if d in paper]
    if not known:
        return ""
    methods = list(paper[known[0]])
    others = [m for m in methods if m != study.baseline]
    head = ["domain", *methods, *[f"{m} / {study.baseline}" for m in others]]
    return markdown(head, [[d, *[f"{paper[d][m]:.1f}" for m in methods],
                             *[f"{paper[d][m] / paper[d][study.baseline]:.2f}" for m in others]]
                            for d in known])


def best_rows(validated: list[dict]) -> list[dict]:
    """Runs that kept a best-by-validation policy, with its test result as their robustness."""
    return [{**r, "robustness": r["best_robustness"], "training_success": math.nan}  # (not measured)
            for r in validated]


def per_seed_table(rows: list[dict]) -> str:
    """Each run's test robustness (%) of the last policy and of the best by validation (its epoch)."""
    seeds = sorted({r["seed"] for r in rows})
    body = []
    for domain, method in dict.fromkeys((r["domain"], r["method"]) for r in rows):
        by_seed = {r["seed"]: r for r in rows if (r["domain"], r["method"]) == (domain, method)}
        body.append([domain, method, *[
            f"{100 * by_seed[s]['robustness']:.1f} / {100 * by_seed[s]['best_robustness']:.1f} "
            f"(ep. {by_seed[s]['best_epoch']})" if s in by_seed else "-" for s in seeds]])
    return markdown(["domain", "method", *[f"seed {s}: last / best" for s in seeds]], body)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path)
    return path


def plot_curves(study: Study, out: Path) -> list[Path]:
    """Validation robustness against epoch, one PNG per domain and method with every seed's curve."""
    from bmil.plots import plt

    groups: dict[tuple[str, str], list] = {}
    for run in study.runs:
        groups.setdefault((run.domain, run.method), []).append(run)
    paths = []
    for (domain, method), runs in groups.items():
        fig, ax = plt.subplots(figsize=(5.8, 3.2), dpi=120)
        for run in runs:
            path = run.folder(out) / RunFolder.VALIDATION
            if path.is_file():
                history = json.loads(path.read_text())["history"]
                ax.plot([h["epoch"] for h in history], [100 * h["rate"] for h in history],
                        marker=".", label=f"seed {run.seed}")
        if ax.lines:
            ax.set(title=f"{domain}: {method}", xlabel="epoch", ylabel="validation robustness (%)",
                   ylim=(-2, 102))
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))  # clear of the curves
            fig.tight_layout()
            paths.append(_save(fig, out / "curves" / f"{domain}__{runs[0].run_id.split('__')[1]}.png"))
        plt.close(fig)
    return paths


def compare_figures(study: Study, out: Path, seed: int = 0) -> list[Path]:
    """Per domain, every method's robustness figure of one seed's final test side by side (maze
    heatmaps, Fetch scatters, Relocate's palm starts): ``compare/<domain>__s<seed>.png``."""
    from bmil.domains import get_domain
    from bmil.plots import figure_to_array, plt

    paths = []
    for domain_name in dict.fromkeys(r.domain for r in study.runs):
        domain, panels = get_domain(domain_name), []
        for run in (r for r in study.runs if r.domain == domain_name and r.seed == seed):
            path = run.folder(out) / RunFolder.robustness_name("final")
            if not (run.folder(out).is_done() and path.is_file()):
                continue
            record = json.loads(path.read_text())
            if "starts" not in record:  # (a record without per-start outcomes)
                continue
            starts, success = np.asarray(record["starts"]), np.asarray(record["success"], dtype=bool)
            result = EvalResult.of(domain, starts, success, np.zeros(len(success), dtype=int), record["success_mode"])
            fig = domain.robustness_figure(result)
            panels.append((run.method, figure_to_array(fig)))
            plt.close(fig)
        if len(panels) < 2:
            continue
        height, width = max(p.shape[0] for _, p in panels), max(p.shape[1] for _, p in panels)
        fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * width / 150, height / 150 + 0.4), dpi=150)
        for ax, (method, pixels) in zip(axes, panels):
            ax.imshow(pixels)
            ax.set_title(method, fontsize=10)
            ax.axis("off")
        fig.tight_layout()
        paths.append(_save(fig, out / "compare" / f"{domain_name}__s{seed}.png"))
        plt.close(fig)
    return paths


def write_results(study: Study, out: Path) -> Path:
    rows = collect(study, out)
    write_csv(rows, out / "results.csv")
    done = f"{len(rows)} of {len(study.runs)} runs finished"
    rows = [r for r in rows if r["robustness"] is not None]  # (runs that skipped the final test)
    table = markdown_table(study, rows) if rows else "(no finished runs)"
    text = f"# {study.name}\n\nRobustness (%), mean ± 95% t-interval over seeds; {done}.\n\n{table}\n"
    if rows:
        text += f"\nCore-hours (each run's wall time on one core, summed over its seeds):\n\n{core_hours_table(rows)}\n"
    validated = [r for r in rows if r.get("best_robustness") is not None]
    if validated:
        text += ("\nThe same runs' policy chosen on validation starts (the highest validation robustness "
                 f"of the run; tested on the same test starts):\n\n{markdown_table(study, best_rows(validated))}\n"
                 f"\nPer seed, the last policy / the best by validation (%):\n\n{per_seed_table(validated)}\n")
        plot_curves(study, out)
    if not study.plot:  # (ablations have their own plot; the table is the runs' result.json alone)
        compare_figures(study, out)
    flags = flags_table(rows)
    if flags:
        text += f"\nEpisodes of the final test that ended flagged by their domain (e.g. the ant upside down), mean over seeds:\n\n{flags}\n"
    paper = paper_table(study, list(dict.fromkeys(r.domain for r in study.runs)))
    if paper:
        text += (f"\nThe paper's numbers (its {study.name.replace('table', 'Table ')}; other experts and, on "
                 f"the mazes, another point agent: see docs/reproducing.md):\n\n{paper}\n")
    (out / "table.md").write_text(text)
    if study.plot and rows:
        plot_study(study, rows, out / f"{study.name}.png")
    return out / "table.md"
