"""Every shipped config parses against ``BMILModule``'s signature, and overlays layer as documented."""

from pathlib import Path

import pytest
import yaml

from bmil.cli import main

CONF = Path(__file__).resolve().parents[1] / "conf"


def _parsed(capsys, *configs: Path) -> dict:
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code in (0, None), capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("config", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_config_parses(config, capsys):
    parsed = _parsed(capsys, config)
    assert parsed["model"]["env"] == yaml.safe_load(config.read_text())["model"]["env"]


@pytest.mark.parametrize("base", ["pickplace.yaml", "pickplace_bc.yaml", "push.yaml", "push_bc.yaml"])
def test_ablation_eval_overlay_replaces_only_the_callbacks(base, capsys):
    plain = _parsed(capsys, CONF / base)
    layered = _parsed(capsys, CONF / base, CONF / "overlays" / "fetch_ablation_eval.yaml")
    robustness = [c for c in layered["trainer"]["callbacks"] if c["class_path"] == "callbacks.Robustness"]
    assert [c["init_args"]["final_episodes"] for c in robustness] == [2000]
    assert layered["model"] == plain["model"]
    assert {k: v for k, v in layered["trainer"].items() if k != "callbacks"} == \
        {k: v for k, v in plain["trainer"].items() if k != "callbacks"}
