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


@pytest.mark.parametrize("base, overlay, final", [
    *[(b, "fetch_ablation_eval.yaml", 2000) for b in ("pickplace.yaml", "pickplace_bc.yaml", "push.yaml", "push_bc.yaml")],
    *[(f"point_{m}{s}.yaml", "maze_table1_eval.yaml", 1000)
      for m in ("umaze", "room5x11", "corridor7x7") for s in ("", "_bc", "_vins")],
])
def test_eval_overlays_replace_only_the_callbacks(base, overlay, final, capsys):
    plain = _parsed(capsys, CONF / base)
    layered = _parsed(capsys, CONF / base, CONF / "overlays" / overlay)
    robustness = [c for c in layered["trainer"]["callbacks"] if c["class_path"] == "callbacks.Robustness"]
    assert [c["init_args"]["final_episodes"] for c in robustness] == [final]
    assert layered["model"] == plain["model"]
    assert {k: v for k, v in layered["trainer"].items() if k != "callbacks"} == \
        {k: v for k, v in plain["trainer"].items() if k != "callbacks"}
