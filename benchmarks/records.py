"""The records of a tiny BMIL fit, a tiny VINS fit and a tiny tune, as digests: a refactor that keeps
what bmil computes prints the same lines before and after (run both on one machine).

    python benchmarks/records.py            # about 3 minutes on 2 cores

Each fit is ``bmil fit --config conf/pickplace_quick.yaml`` (VINS: its layer over that) at two epochs
of five policy steps, validation on 4 starts, a final test on 4; the tune is ``bmil tune`` of BC, two
trials and one final seed. Printed per run: a hash of the weights in ``last.ckpt`` and of its records
(``result.json`` less its clock and numerics, ``validation.json``, ``robustness_final.json``); for the
tune, the trials' parameters and values and the summary less its core-hours.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {"trainer": {"max_epochs": 2},
        "model": {"init_args": {"policy": {"steps_per_epoch": 5}, "demos": {"num": 2}}},
        "training_success": {"every_n_epochs": 0},
        "validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
        "robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0}}
CLOCKS = ("seconds", "numerics", "resumed")


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def bmil(folder: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bmil.cli", *args], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bmil {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def run_records(run: Path, tmp: Path) -> dict:
    """Digests of the run's weights and records; the temporary folder's name, which differs from one
    invocation to the next, is left out of them."""
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    weights = hashlib.sha256(b"".join(k.encode() + v.numpy().tobytes() for k, v in sorted(state.items())))
    records = {"weights": weights.hexdigest()[:16]}
    for name in ("result.json", "validation.json", "robustness_final.json"):
        if (run / name).is_file():
            record = json.loads((run / name).read_text().replace(str(tmp), "<tmp>"))
            records[name] = digest({k: v for k, v in record.items() if k not in CLOCKS})
    return records


def tune_records(out: Path, tmp: Path) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    trials = [(t.number, t.state.name, t.params, t.value, t.intermediate_values)
              for t in optuna.load_study(study_name="bc", storage=storage).trials]
    summary = json.loads((out / "summary.json").read_text().replace(str(tmp), "<tmp>"))
    summary.pop("pruning")
    summary.pop("core_hours", None)  # clocks (the summary had none before they were recorded)
    summary.pop("skipped_checks", None)
    return {"trials": digest(trials), "summary": digest(summary),
            "runs": {p.name: run_records(p / "version_0", tmp) for p in sorted((out / "runs").iterdir())}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conf").symlink_to(ROOT / "conf")
        (folder / "tiny.yaml").write_text(yaml.safe_dump(TINY))
        tiny = ["--config", "tiny.yaml"]
        base = ["--config", "conf/pickplace_quick.yaml"]
        for name, layer in (("bmil", []), ("vins", ["--config", "conf/vins_pickplace.yaml"])):
            bmil(folder, "fit", *base, *layer, *tiny, "--trainer.logger.init_args.name", name)
            print(name, json.dumps(run_records(folder / "runs" / name / "version_0", folder), sort_keys=True), flush=True)
        bmil(folder, "tune", *base, *tiny, "--methods", "bc", "--trials", "2", "--jobs", "2", "--finalists", "0",
             "--final_seeds", "1", "--out", "tune")
        print("tune", json.dumps(tune_records(folder / "tune", folder), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
