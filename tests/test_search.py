"""The settings search (``bmil reproduce search``) runs on the tuner: per family, ``bmil tune`` of
NoiseBC, CCIL and BMIL at the family's budget, validation starts only, the current family settings
competing as each method's defaults."""

import json
import shutil

import pytest

from bmil.errors import BMILError
from bmil.studies import reproduce
from bmil.studies.search import family_settings, write_table
from bmil.tuning.tuner import Tuner


def test_the_current_family_settings_are_read_as_fit_keys(tmp_path):
    assert family_settings(tmp_path / "none.yaml") == {}
    assert family_settings(__import__("pathlib").Path("conf/ccil_fetch.yaml")) == \
        {"model.ccil.lipschitz": 3.0, "model.ccil.max_distance": 5.0}
    (tmp_path / "nested.yaml").write_text("model: {class_path: bmil.methods.NoiseBC, init_args: {noise: {scale: 0.3}}}\n")
    assert family_settings(tmp_path / "nested.yaml") == {"model.noise.scale": 0.3}


def test_the_search_tunes_each_family_at_its_budget_against_its_current_settings(tmp_path, monkeypatch):
    tuned = []
    monkeypatch.setattr(Tuner, "run", lambda self: tuned.append(self))
    reproduce("search", domains="pickplace,relocate", seeds=2, jobs=1, out=str(tmp_path / "search"))
    assert [t.out.name for t in tuned] == ["pickplace", "relocate"]
    fetch, adroit = tuned
    assert fetch.configs == ["conf/pickplace.yaml", "conf/overlays/search_fetch.yaml"]
    assert fetch.methods == ["noise_bc", "ccil", "bmil"] and fetch.trials == 6 and fetch.final_seeds == 0
    assert (fetch.finalists, fetch.finalist_seeds) == (2, 1)
    from bmil.tuning.space import Task

    space = [p.key for p in fetch.space_of("noise_bc", Task(50, 50, 50, 10))]
    assert "trainer.max_epochs" not in space and "model.noise.scale" in space  # the family's budget is fixed
    assert fetch.reference == {"noise_bc": {"model.noise.scale": 0.3},
                               "ccil": {"model.ccil.lipschitz": 3.0, "model.ccil.max_distance": 5.0}, "bmil": {}}
    assert adroit.reference["bmil"] == {"model.demo_ratio": 0.9}  # conf/bmil_adroit.yaml
    for tuner in tuned:  # the budget never tests, always validates
        assert tuner.base["robustness"]["final_episodes"] == 0 and tuner.base["validation"]["every_n_epochs"] > 0


def test_the_search_plan_runs_nothing(tmp_path, monkeypatch, capsys):
    planned = []
    monkeypatch.setattr(Tuner, "plan", lambda self: planned.append(self.out.name))
    monkeypatch.setattr(Tuner, "run", lambda self: pytest.fail("--plan ran the tune"))
    reproduce("search", domains="pickplace,relocate", seeds=2, jobs=1, out=str(tmp_path / "search"), plan=True)
    assert planned == ["pickplace", "relocate"] and not (tmp_path / "search").exists()


def test_the_search_refuses_what_would_change_its_budget_or_is_missing(tmp_path):
    with pytest.raises(BMILError, match="takes no --extra"):
        reproduce("search", domains="pickplace", extra="--robustness.final_episodes 100")
    with pytest.raises(BMILError, match="takes no --domain_extra, --reuse"):
        reproduce("search", domains="pickplace", domain_extra={"push": "--seed 1"}, reuse="results/table1")
    with pytest.raises(BMILError, match="--seeds 0; give at least 1"):
        reproduce("search", domains="pickplace", seeds=0)
    configs = shutil.copytree("conf", tmp_path / "conf")
    (configs / "overlays" / "search_fetch.yaml").unlink()
    with pytest.raises(BMILError, match="no budget for domain 'push'.*search_fetch.yaml"):
        reproduce("search", domains="push", configs=str(configs), out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_table_sets_the_tuners_choice_beside_the_current_settings(tmp_path):
    def finalist(trial, settings, score):
        return {"trial": trial, "settings": settings, "score": score, "trial_score": None if trial is None else 0.5}

    summary = {"chosen": {"noise_bc": {"trial": 4, "finalists": [finalist(4, {"model.noise.scale": 0.123456}, 0.42),
                                                                  finalist(1, {"model.noise.scale": 1.0}, 0.30),
                                                                  finalist(None, {"model.noise.scale": 0.3}, 0.35)]}},
               "trials": {"noise_bc": {"complete": 4, "pruned": 1, "fail": 1}}}
    (tmp_path / "pickplace").mkdir()
    (tmp_path / "pickplace" / "summary.json").write_text(json.dumps(summary))
    table = write_table(["pickplace", "relocate"], tmp_path, 500).read_text()  # relocate: not run yet
    assert "| pickplace | noise_bc | scale 0.3 | 35.0 | 4: scale 0.123 | 42.0 | +7.0 | trial 4 | 4, 1, 1 | 0.00 |" in table
    assert "relocate" not in table and "500 validation starts" in table
