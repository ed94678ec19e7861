"""``bmil reproduce``: the paper's comparisons as studies of independent ``bmil fit`` runs, in three
parts: ``catalog`` (which runs), ``sweep`` (the runs left, through an executor; resume) and ``report``
(tables, plots); ``search`` runs ``bmil tune`` per domain family.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from bmil import configs as shipped_configs
from bmil.cluster import fits_at_once
from bmil.domains import get_domain
from bmil.errors import BMILError
from bmil.files import check_folder
from bmil.studies.catalog import make_study, split_args, with_extra
from bmil.studies.report import write_results
from bmil.studies.sweep import run_study
from bmil.system import usable_cores


def reproduce(study: str, domains: str = "pickplace,push", seeds: int = 3, jobs: Optional[int] = None,
              out: Optional[str] = None, extra: str = "", domain_extra: Optional[dict[str, str]] = None,
              configs: str = "conf", methods: str = "", reuse: str = "", executor: str = "local",
              ray_address: Optional[str] = None, plan: bool = False) -> None:
    """Run a study of the paper as independent ``bmil fit`` runs and tabulate the results.

    Args:
        study: table1, table2, fig5a, fig5b, fig6, table6 (the paper's), stability, selection,
            baselines, or search (the baselines' family settings: bmil tune per family, on validation
            starts; seeds sets its budget, 3 x seeds trials per method).
        domains: Comma-separated environment names (each needs conf/<env>.yaml and, for table1,
            conf/vins_<env>.yaml).
        seeds: Seeds 0..seeds-1 per configuration.
        jobs: Runs at once (default: the usable CPU cores; a search on Ray: the cluster's CPUs).
        out: Study folder (default results/<study>); rerunning skips finished runs.
        extra: Extra ``bmil fit`` arguments for every run, e.g. "--trainer.max_epochs 50".
        domain_extra: Extra ``bmil fit`` arguments for the runs of some domains, after ``extra``:
            {domains: arguments}, domains being comma-separated names or globs, e.g.
            '{"pickplace,push": "--config conf/overlays/fetch_ablation_eval.yaml", "point_*":
            "--config conf/overlays/maze_table1_eval.yaml"}' gives each family of domains its own
            evaluation budget in one study.
        configs: Folder of the runs' configs (<domain>.yaml for BMIL, with bc.yaml over it for BC
            and vins_<domain>.yaml for VINS); conf: ./conf where there is one, else bmil's shipped configs.
        methods: Comma-separated method labels to run now (default: all), e.g. "BC,BMIL" to get
            the cheap columns of table1 before VINS's; the table shows every finished run.
        reuse: Comma-separated study folders whose finished runs this study takes instead of running
            them again, where a run of the same id was made with the same settings (its signature),
            e.g. "results/table1" for the baselines study's BC, VINS and BMIL.
        executor: local (fit processes on this machine) or ray (fits as tasks on a Ray cluster; the
            study folder stays here; docs/cluster.md).
        ray_address: With --executor ray: auto, HOST:PORT, or none to join RAY_ADDRESS or start a
            local Ray instance.
        plan: Print the runs to do and those done, and the core-hours the runs to do will take
            (from the recorded run times), without running anything.
    """
    names = [d.strip() for d in domains.split(",") if d.strip()]
    configs = shipped_configs.folder(configs)  # conf: the shipped configs where ./conf is none

    for name in names:
        get_domain(name)  # an unknown name is one clear error before anything runs
    if study == "search":
        from bmil.studies.search import refuse_other_arguments, search

        refuse_other_arguments(extra=extra, domain_extra=domain_extra, methods=methods, reuse=reuse)
        t0 = time.perf_counter()
        path = search(names, seeds, fits_at_once(jobs, executor, ray_address), Path(out or Path("results") / study), configs,
                      executor, ray_address, plan)
        if path is None:  # --plan: nothing ran
            return
        print(path.read_text())
        print(f"{path} written; this invocation took {time.perf_counter() - t0:.0f} s")
        return
    plan_runs = make_study(study, names, list(range(seeds)), configs)
    plan_runs.runs = with_extra(plan_runs.runs, split_args(extra, "--extra"), domain_extra or {})
    chosen = {m.strip() for m in methods.split(",") if m.strip()} or None
    labels = list(dict.fromkeys(r.method for r in plan_runs.runs))
    if chosen and not chosen <= set(labels):
        raise BMILError(f"unknown method(s) {', '.join(sorted(chosen - set(labels)))} for study "
                        f"'{study}'. Its methods: {', '.join(labels)}.")
    sources = [Path(p.strip()) for p in reuse.split(",") if p.strip()]
    for source in sources:
        if not (source / "runs").is_dir():
            raise BMILError(f"--reuse {source}: not a study folder (no runs/ inside). Name a folder that "
                            "bmil reproduce wrote, e.g. results/table1.")
    folder = Path(out or Path("results") / study)
    if plan:
        from bmil.studies.sweep import plan as plan_text

        print(plan_text(plan_runs, folder, chosen, sources))
        return
    check_folder(folder, "--out")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_study(plan_runs, folder, jobs or usable_cores(), methods=chosen, reuse=sources, executor=executor,
              ray_address=ray_address)
    path = write_results(plan_runs, folder)
    print(path.read_text())
    print(f"{path} written; this invocation took {time.perf_counter() - t0:.0f} s")
