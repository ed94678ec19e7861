"""The shipped configs: every domain with every method parses to the intended settings, the layers
compose as documented, and no block of settings is written twice in conf/."""

from pathlib import Path

import pytest
import yaml

from bmil.lightning_cli import fit_settings

CONF = Path(__file__).resolve().parents[1] / "conf"
DOMAINS = ["pickplace", "push", "point_umaze", "point_room5x11", "point_corridor7x7",
           "ant_umaze", "ant_room5x11", "ant_corridor7x7", "relocate"]


def _settings(*configs: str) -> dict:
    return fit_settings([arg for c in configs for arg in ("--config", str(CONF / c))])


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_method_on_every_domain_parses_with_the_domains_settings(domain):
    bmil = _settings(f"{domain}.yaml")
    bc = _settings(f"{domain}.yaml", "bc.yaml")
    vins = _settings(f"{domain}.yaml", f"vins_{domain}.yaml")
    assert [s["model"]["class_path"] for s in (bmil, bc, vins)] == [
        "bmil.methods.BMIL", "bmil.methods.BC", "bmil.methods.VINS"]
    for other in (bc, vins):  # the same domain, demos, policy budget and evaluation for every method
        for key in ("env", "demos", "policy"):
            assert other["model"]["init_args"][key] == bmil["model"]["init_args"][key]
        for group in ("trainer", "training_success", "robustness", "checkpoint"):
            assert other[group] == bmil[group]
    assert bmil["model"]["init_args"]["env"] == domain
    assert vins["model"]["init_args"]["vins"]["value_steps"] > 0


def test_family_and_domain_layers_give_the_original_hyper_parameters():
    pickplace, push = (_settings(f"{d}.yaml")["model"]["init_args"] for d in ("pickplace", "push"))
    assert (pickplace["demos"]["num"], push["demos"]["num"]) == (10, 5)
    assert (pickplace["traces"]["selection_coef"], push["traces"]["selection_coef"]) == (30.0, 3.0)
    assert pickplace["traces"]["length"] == [1, 3] and push["traces"]["length"] == [1, 1]
    assert pickplace["policy"] == push["policy"] and pickplace["demo_ratio"] == push["demo_ratio"] == 0.5
    umaze, room = (_settings(f"point_{m}.yaml") for m in ("umaze", "room5x11"))
    assert umaze["model"]["init_args"]["traces"]["selection_coef"] == 40.0
    assert room["model"]["init_args"]["traces"]["selection_coef"] == 1.0
    assert umaze["model"]["init_args"]["traces"]["bound_states"] and umaze["trainer"]["max_epochs"] == 800
    assert (umaze["robustness"]["final_episodes"], room["robustness"]["final_episodes"]) == (1300, 5100)
    # The original's Ant rows (docs/original-code.md): M, p_d and SC per maze, 400 epochs, L to 9.
    ants = [_settings(f"ant_{m}.yaml") for m in ("umaze", "room5x11", "corridor7x7")]
    assert [(a["model"]["init_args"]["policy"]["steps_per_epoch"], a["model"]["init_args"]["demo_ratio"],
             a["model"]["init_args"]["traces"]["selection_coef"]) for a in ants] == [
        (250, 0.95, 40.0), (500, 0.9, 10.0), (500, 0.95, 10.0)]
    for a in ants:
        init = a["model"]["init_args"]
        assert a["trainer"]["max_epochs"] == 400 and init["demos"]["num"] == 20 and init["policy"]["batch_size"] == 256
        assert init["traces"]["length"] == [1, 10] and init["traces"]["length_epochs"] == [100, 400]
        assert init["traces"]["bound_states"]
    vins_ant = _settings("ant_umaze.yaml", "vins_ant_umaze.yaml")["model"]["init_args"]["vins"]
    assert (vins_ant["perturb_scale"], vins_ant["ns_penalty"], vins_ant["perturb_dims"]) == (0.3, 0.01, [0, 1])
    relocate = _settings("relocate.yaml")
    init = relocate["model"]["init_args"]
    assert (init["demos"]["num"], init["policy"]["batch_size"], init["policy"]["steps_per_epoch"],
            relocate["trainer"]["max_epochs"], init["demo_ratio"], init["traces"]["selection_coef"]) == (20, 64, 50, 600, 0.8, 3.0)
    assert init["traces"]["length_epochs"] == [100, 600] and not init["traces"]["bound_states"]
    assert relocate["robustness"]["final_episodes"] == 1000


@pytest.mark.parametrize("base, overlay, changed", [
    *[(f"{d}.yaml", "overlays/fetch_ablation_eval.yaml", {"robustness", "validation"}) for d in ("pickplace", "push")],
    *[(f"point_{m}.yaml", "overlays/maze_table1_eval.yaml", {"robustness", "training_success", "validation"})
      for m in ("umaze", "room5x11", "corridor7x7")],
    ("point_umaze.yaml", "overlays/maze_quick.yaml", {"trainer", "robustness", "training_success", "model"}),
    *[(f"ant_{m}.yaml", "overlays/ant_table1_eval.yaml", {"robustness", "training_success", "validation"})
      for m in ("umaze", "room5x11", "corridor7x7")],
    ("ant_umaze.yaml", "overlays/ant_quick.yaml", {"trainer", "robustness", "training_success", "validation", "model"}),
    ("relocate.yaml", "overlays/relocate_table1_eval.yaml", {"robustness", "training_success", "validation"}),
    ("relocate.yaml", "overlays/relocate_quick.yaml", {"trainer", "robustness", "training_success", "validation", "model"}),
    ("pickplace.yaml", "pickplace_quick.yaml", {"trainer", "robustness", "training_success"}),
])
def test_overlays_change_only_their_groups(base, overlay, changed):
    plain, layered = _settings(base), _settings(base, overlay)
    differ = {k for k in plain if k != "config" and plain[k] != layered[k]}
    assert differ == changed


def test_no_block_of_settings_is_repeated_across_config_files():
    """Four consecutive setting lines (comments aside) never appear in two files: what families
    share lives in their family file."""
    def blocks(path):
        lines = [line.split("#")[0].rstrip() for line in path.read_text().splitlines()]
        lines = [line for line in lines if line.strip()]
        return {tuple(lines[i:i + 4]) for i in range(len(lines) - 3)}

    seen = {}
    for path in sorted(CONF.rglob("*.yaml")):
        for block in blocks(path):
            assert block not in seen, f"{path.name} repeats {seen.get(block)}: {block}"
            seen[block] = path.name
    assert yaml.safe_load((CONF / "bc.yaml").read_text()) == {"model": {"class_path": "bmil.methods.BC"}}
