"""The domain registry: one place resolves names, a user's domain registers by import path, and it
reaches evaluation worker processes, which are spawned."""

import numpy as np
import pytest

from bmil.domains import Domain, domain_names, get_domain, register_domain
from bmil.errors import BMILError
from bmil.evaluation import Evaluator


def test_names_resolve_once_to_the_same_domain():
    assert {"push", "pickplace", "point_umaze", "point_room5x11_time"} <= set(domain_names())
    assert get_domain("push") is get_domain("push")
    with pytest.raises(BMILError, match="Unknown environment 'pushh'. Did you mean 'push'?"):
        get_domain("pushh")


def test_a_users_domain_by_import_path_or_registered_name():
    direct = get_domain("probes:small_umaze")
    assert isinstance(direct, Domain) and direct.horizon == 60
    register_domain("small_umaze", "probes:small_umaze")
    assert "small_umaze" in domain_names() and get_domain("small_umaze").name == "small_umaze"
    with pytest.raises(BMILError, match="Cannot import the domain factory 'probes:nothing_here'"):
        get_domain("probes:nothing_here")
    with pytest.raises(BMILError, match="not a bmil.domains.Domain"):
        get_domain("builtins:dict")  # a factory that makes something else


@pytest.mark.slow
def test_a_users_domain_reaches_spawned_evaluation_workers():
    register_domain("small_umaze", "probes:small_umaze")
    domain = get_domain("small_umaze")
    expert = domain.make_expert(0)
    with Evaluator(domain, workers=2, batch_size=4) as pooled:
        in_workers = pooled.run(expert, "robustness", 13, seed=1)
    in_process = Evaluator(domain, workers=0, batch_size=4).run(expert, "robustness", 13, seed=1)
    assert in_workers.domain == "small_umaze" and in_workers.episodes == 13
    assert np.array_equal(in_workers.success, in_process.success)
    assert np.array_equal(in_workers.steps, in_process.steps) and in_workers.steps.max() <= 60
