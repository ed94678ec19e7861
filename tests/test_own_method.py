"""Adding a method is one file and one config: ``JitterBC`` below and its config layer, registered with
no edit anywhere else, passes the contract every method passes (tests/contract.py), runs in a
study and is tuned."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from contract import check_configs, check_fit, check_search_space

from bmil.methods import BC, get_method, register
from bmil.methods.base import as_settings
from bmil.tuning.space import Param, Task

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class JitterSettings:
    """
    Args:
        scale: Standard deviation of the Gaussian noise on the demo actions the policy imitates.
    """

    scale: float = 0.1


@register("jitter_bc", config="jitter_bc.yaml", tunable=True)
class JitterBC(BC):
    """BC on demo actions with Gaussian jitter: a method of a user's own, defined in this file."""

    def __init__(self, jitter: JitterSettings = JitterSettings(), **kwargs):
        """
        Args:
            jitter: The action noise.
            **kwargs: BC's settings.
        """
        super().__init__(**kwargs)
        self.jitter_cfg = as_settings(JitterSettings, jitter)

    def policy_batch(self):
        obs, action = super().policy_batch()
        noise = torch.randn(action.shape, generator=self._rng).to(action.device)
        return obs, (action + self.jitter_cfg.scale * noise).clamp(-1, 1)

    @classmethod
    def search_space(cls, task: Task) -> list[Param]:
        return [Param("model.jitter.scale", 0.01, 0.5, log=True), *super().search_space(task)]


CLASS_PATH = f"{JitterBC.__module__}.JitterBC"


@pytest.fixture
def configs(tmp_path) -> Path:
    """The shipped configs, and the method's one config beside them."""
    folder = tmp_path / "conf"
    folder.mkdir()
    for path in (ROOT / "conf").iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "jitter_bc.yaml").write_text(yaml.safe_dump({"model": {"class_path": CLASS_PATH}}))
    return folder


@pytest.fixture
def importable(monkeypatch):
    """The fits a study or tune starts are new processes: they import the method by its class path."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))


def test_the_method_is_known_by_its_name_and_its_import_path():
    method = get_method("jitter_bc")
    assert method.cls is JitterBC and method.class_path == CLASS_PATH and method.label == "JitterBC"
    assert get_method(f"{JitterBC.__module__}:JitterBC") is method


def test_its_configs_parse_over_every_domain(configs):
    check_configs("jitter_bc", configs)


def test_its_search_space_resolves_through_the_fit_parser():
    check_search_space("jitter_bc")


@pytest.mark.slow
def test_it_fits_resumes_exactly_and_exports(tmp_path, push_demos):
    check_fit("jitter_bc", tmp_path, push_demos)


def _tiny(tmp_path: Path, push_demos: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 2}, "training_success": {"every_n_epochs": 0},
        "model": {"init_args": {"policy": {"steps_per_epoch": 5}, "demos": {"num": 2, "path": str(push_demos)}}},
        "validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
        "robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0}}))
    return path


@pytest.mark.slow
def test_a_study_and_a_tune_run_it(tmp_path, push_demos, configs, importable, monkeypatch):
    from bmil.studies.catalog import Run, Study, method_configs
    from bmil.studies.sweep import run_study
    from bmil.tuning.tuner import Tuner

    monkeypatch.chdir(tmp_path)
    tiny = _tiny(tmp_path, push_demos)
    run = Run("push", "JitterBC", 0, method_configs(str(configs), "push", "jitter_bc"), extra=("--config", str(tiny)))
    [result] = run_study(Study("mine", [run]), tmp_path / "study", jobs=1, progress=lambda *_: None)
    assert not result.get("failed") and result["robustness"] is not None, result
    saved = yaml.safe_load((run.folder(tmp_path / "study") / "config.yaml").read_text())
    assert saved["model"]["class_path"] == CLASS_PATH

    tuner = Tuner([str(configs / "push.yaml"), str(tiny)], ["jitter_bc"], trials=1, jobs=1, out=tmp_path / "tune",
                  finalists=0, final_seeds=0)
    summary = tuner.run()
    assert summary["winner"] == "jitter_bc" and summary["trials"]["jitter_bc"]["complete"] == 1
    scale = summary["chosen"]["jitter_bc"]["settings"]["model.jitter.scale"]
    overlay = yaml.safe_load((tmp_path / "tune" / "tuned_jitter_bc.yaml").read_text())
    assert overlay["model"]["class_path"] == CLASS_PATH and overlay["model"]["init_args"]["jitter"]["scale"] == scale
    trial = next((tmp_path / "tune" / "runs").iterdir()) / "version_0"
    assert json.loads((trial / "result.json").read_text())["validation_late"] is not None
