"""Every registered method against the contract (tests/contract.py): configs over every domain,
a tiny fit, a bit-identical resume, export, and its search space through the fit's parser."""

from pathlib import Path

import pytest
from contract import check_configs, check_fit, check_search_space

from bmil.methods import registered

CONF = Path(__file__).resolve().parents[1] / "conf"
METHODS = list(registered())
# The phases that take long at their defaults, made short (a method not named here fits at its defaults).
TINY = {"ccil": {"ccil": {"model_steps": 50}}, "vins": {"vins": {"value_steps": 10, "model_steps": 5}}}


@pytest.mark.parametrize("name", METHODS)
def test_the_method_parses_over_every_domain_and_a_settings_env(name):
    check_configs(name, CONF)


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_the_method_fits_resumes_exactly_and_exports(name, tmp_path, push_demos):
    check_fit(name, tmp_path, push_demos, **TINY.get(name, {}))


@pytest.mark.parametrize("name", [name for name, m in registered().items() if m.tunable])
def test_every_parameter_of_its_search_space_resolves_through_the_fit_parser(name):
    check_search_space(name)
