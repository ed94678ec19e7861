"""The contract every registered method fulfils, as checks a test runs for a method by its registered
name (tests/test_contract.py for bmil's own, tests/test_own_method.py for one defined in a test):

- ``check_configs``: its config layer over every registered domain's config, and over a settings
  environment's (``--model`` switch), parses to the method;
- ``check_fit``: a tiny fit on Push trains, a run crashed mid-epoch and resumed ends bit-identical
  to the uninterrupted one, ``bmil evaluate`` scores its checkpoint, and the exported policy acts as
  the checkpoint's acting module does;
- ``check_search_space``: every parameter of its search space resolves through the fit's parser to
  the value drawn.
"""

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from test_fit import _config

from bmil.cli import main
from bmil.domains import domain_names, get_domain
from bmil.export import export_policy, load_policy
from bmil.lightning_cli import fit_settings
from bmil.methods import get_method
from bmil.studies.catalog import method_configs
from bmil.tuning.space import Task, as_overrides, suggest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = "conf/examples/pointmaze_umaze.yaml"  # a gymnasium environment given by its settings
SMALL = {"policy": {"batch_size": 16, "steps_per_epoch": 4}}  # every method's own phase at its defaults


def check_configs(name: str, configs: Path) -> None:
    method = get_method(name)
    for domain in domain_names():
        layers = method_configs(str(configs), domain, name)
        if not all(Path(c).is_file() for c in layers):
            continue  # (a method with a per-domain layer, such as VINS, on a domain it has none for)
        settings = fit_settings([arg for c in layers for arg in ("--config", c)])
        assert settings["model"]["class_path"] == method.class_path, (name, domain)
        assert get_domain(settings["model"]["init_args"]["env"]).name == domain
    settings = fit_settings(["--config", str(ROOT / SETTINGS_ENV), "--model", method.class_path])
    assert settings["model"]["class_path"] == method.class_path and isinstance(settings["model"]["init_args"]["env"], dict)


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=False)["state_dict"]


def check_fit(name: str, tmp_path: Path, push_demos: Path, **tiny) -> None:
    """``tiny``: settings of the method's own phase that make its fit quick (its defaults otherwise)."""
    class_path = get_method(name).class_path
    init = {**SMALL, **tiny}
    epochs = ["--trainer.max_epochs", "2"]
    full = tmp_path / "full"
    main(["fit", "--config", str(_config(full, push_demos, method=class_path, **init)), *epochs])
    crashed = tmp_path / "crashed"
    crash = [{"class_path": "probes.StopMidEpoch", "init_args": {"epoch": 1, "step": 2}}]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", "--config", str(_config(crashed, push_demos, crash, method=class_path, **init)), *epochs])
    last = crashed / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0  # the crash hit epoch 1
    main(["fit", "--config", str(_config(crashed, push_demos, method=class_path, **init)), *epochs,
          "--ckpt_path", str(last)])
    a, b = _state(full / "ckpt" / "last.ckpt"), _state(last)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    main(["evaluate", "--config", str(full / "config.yaml"), "--ckpt_path", str(full / "ckpt" / "last.ckpt"),
          "--episodes", "4", "--training_episodes", "1", "--workers", "0", "--json_out", str(tmp_path / "eval.json")])
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["robustness"]["episodes"] == 4 and len(evaluated["success"]) == 4

    exported = tmp_path / "policy.pt"
    export_policy(str(full / "ckpt" / "last.ckpt"), str(exported))
    policy = load_policy(str(exported))
    module = get_method(name).cls.load_from_checkpoint(full / "ckpt" / "last.ckpt", map_location="cpu")
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(8, module.domain.obs_dim)), dtype=torch.float32)
    acting = module.export_module().eval()
    with torch.inference_mode():  # (each from the same global seed: VINS draws its candidate actions)
        torch.manual_seed(0)
        exported_actions = torch.as_tensor(policy(obs))
        torch.manual_seed(0)
        assert torch.allclose(exported_actions, acting(obs), atol=1e-5), name


def check_search_space(name: str) -> None:
    method = get_method(name)
    space = method.cls.search_space(Task(horizon=50, shortest_demo=50, epochs=20, validation_every=5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    base = ["--config", str(ROOT / "conf" / "push.yaml"), "--model", method.class_path]
    for _ in range(3):
        drawn = suggest(study.ask(), space, 20)
        settings = fit_settings([*base, *as_overrides(drawn)])
        for key, value in drawn.items():
            node = settings
            for part in key.split("."):
                node = node["init_args"][part] if part not in node and "init_args" in node else node[part]
            assert yaml.safe_load(yaml.safe_dump(node)) == yaml.safe_load(yaml.safe_dump(value)), (name, key)
