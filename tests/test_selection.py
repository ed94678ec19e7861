"""Issue 25's options: averaged policy weights, learning-rate decay, and the policy chosen on
validation starts (never the test starts)."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from bmil.cli import main
from bmil.domains import get_domain
from bmil.methods.base import PolicySettings
from test_fit import _config


def test_learning_rate_is_constant_then_decays_by_cosine_to_its_final_fraction():
    cfg = PolicySettings(lr=1e-3, lr_decay_epochs=4, lr_decay_to=0.1)
    rates = [cfg.lr_at(epoch, 10) for epoch in range(10)]
    assert rates[:6] == [1e-3] * 6
    assert all(a > b for a, b in zip(rates[5:], rates[6:]))  # strictly falling over the last 4
    assert rates[-1] == pytest.approx(1e-4)
    assert rates[7] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert [PolicySettings(lr=1e-3).lr_at(e, 10) for e in range(10)] == [1e-3] * 10


@pytest.mark.parametrize("domain", ["pickplace", "push", "point_umaze", "point_room5x11"])
def test_validation_starts_never_are_test_starts(domain):
    d = get_domain(domain)
    test, validation = d.robustness_starts(2000, 0), d.robustness_starts(500, 1)
    # Continuous draws: no validation start lies on (or within 1e-9 of) any test start.
    gaps = np.abs(validation[:, None, -2:] - test[None, :, -2:]).max(-1)
    assert gaps.min() > 1e-9


def test_validation_on_the_test_seed_is_refused(tmp_path, push_demos, capsys):
    groups = {"validation": {"every_n_epochs": 1, "episodes": 2, "seed": 0, "workers": 0},
              "robustness": {"every_n_epochs": 0, "final_episodes": 2, "seed": 0, "workers": 0}}
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(_config(tmp_path, push_demos, groups=groups))])
    assert "validation.seed" in capsys.readouterr().err


def _state(path, prefix):
    state = torch.load(path, weights_only=False)["state_dict"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_averaged_weights_act_and_leave_training_unchanged(tmp_path, push_demos):
    main(["fit", "--config", str(_config(tmp_path / "plain", push_demos, method="BC"))])
    main(["fit", "--config", str(_config(tmp_path / "ema", push_demos, method="BC",
                                         policy={"ema_decay": 0.9}))])
    plain = _state(tmp_path / "plain" / "ckpt" / "last.ckpt", "policy.")
    trained = _state(tmp_path / "ema" / "ckpt" / "last.ckpt", "policy.")
    averaged = _state(tmp_path / "ema" / "ckpt" / "last.ckpt", "policy_average.module.")
    assert plain.keys() == trained.keys() == averaged.keys()
    assert all(torch.equal(plain[k], trained[k]) for k in plain)  # the average never feeds back
    assert not all(torch.equal(trained[k], averaged[k]) for k in plain)
    from bmil.methods import BC

    module = BC.load_from_checkpoint(tmp_path / "ema" / "ckpt" / "last.ckpt", weights_only=False)
    obs = torch.randn(4, module.domain.obs_dim)
    assert torch.equal(module.agent()(obs), module.policy_average.module(obs))
    assert not torch.equal(module.agent()(obs), module.policy(obs))


@pytest.mark.slow
def test_the_best_policy_by_validation_is_kept_tested_and_survives_a_resume(tmp_path, push_demos, capsys, monkeypatch):
    from matplotlib.figure import Figure

    titles, suptitle = [], Figure.suptitle  # the figures' titles, as drawn
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: titles.append(text) or suptitle(self, text, **kw))
    groups = {"validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
              "robustness": {"every_n_epochs": 0, "final_episodes": 6, "workers": 0}}
    full = tmp_path / "full"
    main(["fit", "--config", str(_config(full, push_demos, groups=groups))])
    run = full / "runs" / "t" / "version_0"
    record = json.loads((run / "validation.json").read_text())
    rates = [h["rate"] for h in record["history"]]
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert record["best_epoch"] == 1 + int(np.argmax(rates)) and record["best_rate"] == max(rates)
    best = json.loads((run / "robustness_best.json").read_text())
    last = json.loads((run / "robustness_final.json").read_text())
    assert best["episodes"] == last["episodes"] == 6 and best["starts"] == last["starts"]  # the same test starts
    out = capsys.readouterr().out
    assert "final robustness (the last policy)" in out
    assert f"best robustness (the best by validation, epoch {record['best_epoch']})" in out
    # Each figure's title names the epoch its policy is from: the best's, not the test's at epoch 3.
    assert any(t.startswith("final test, last policy, epoch 3\n") for t in titles)
    assert any(t.startswith(f"final test, best policy by validation, epoch {record['best_epoch']}\n") for t in titles)
    # best.ckpt holds the best epoch's policy: evaluating it gives robustness_best.json's outcomes.
    report = tmp_path / "best.json"
    main(["evaluate", "--config", str(_config(full, push_demos, groups=groups)), "--ckpt_path",
          str(full / "ckpt" / "best.ckpt"), "--episodes", "6", "--workers", "0", "--json_out", str(report)])
    assert json.loads(report.read_text())["success"] == best["success"]
    # A run interrupted after epoch 2, moved to another folder (a study carried to another clone)
    # and resumed there keeps its validation history and best policy.
    crashed, moved = tmp_path / "crashed", tmp_path / "moved"
    crash = [{"class_path": "probes.StopMidEpoch", "init_args": {"epoch": 2, "step": 3}}]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", "--config", str(_config(crashed, push_demos, crash, groups=groups))])
    shutil.move(crashed, moved)
    # Without its best.ckpt the resume stops at once, naming the file.
    shutil.copytree(moved, tmp_path / "no_best")
    (tmp_path / "no_best" / "ckpt" / "best.ckpt").unlink()
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(_config(tmp_path / "no_best", push_demos, groups=groups)),
              "--ckpt_path", str(tmp_path / "no_best" / "ckpt" / "last.ckpt")])
    assert "no_best/ckpt/best.ckpt is missing" in capsys.readouterr().err
    main(["fit", "--config", str(_config(moved, push_demos, groups=groups)),
          "--ckpt_path", str(moved / "ckpt" / "last.ckpt")])
    resumed = moved / "runs" / "t" / "version_0"
    assert json.loads((resumed / "validation.json").read_text()) == record
    assert json.loads((resumed / "robustness_best.json").read_text())["success"] == best["success"]


def test_a_best_policy_that_is_the_last_one_is_tested_once(tmp_path, push_demos, capsys, monkeypatch):
    from bmil.evaluation import Evaluator
    calls = []
    run = Evaluator.run
    monkeypatch.setattr(Evaluator, "run", lambda self, policy, kind, episodes, *a, **k:
                        calls.append(episodes) or run(self, policy, kind, episodes, *a, **k))
    groups = {"validation": {"every_n_epochs": 3, "episodes": 4, "workers": 0},  # one check, at the last epoch
              "robustness": {"every_n_epochs": 0, "final_episodes": 6, "workers": 0}}
    main(["fit", "--config", str(_config(tmp_path, push_demos, groups=groups))])
    assert calls == [4, 6]  # the validation check and one final test, not two
    folder = tmp_path / "runs" / "t" / "version_0"
    last, best = (json.loads((folder / f"robustness_{tag}.json").read_text()) for tag in ("final", "best"))
    assert best == last
    assert "best robustness (the best by validation, epoch 3: the last policy)" in capsys.readouterr().out


@pytest.mark.slow
def test_checks_skipped_and_the_last_policy_untested_leave_what_is_computed_as_it_was(tmp_path, push_demos, capsys,
                                                                                   monkeypatch):
    """bmil tune's trials skip checks nothing reads (validation.after_epoch) and its final runs test
    only the best policy (robustness.test_last false): the checks that run, the training and the
    best policy's test are those of the full fit, bit for bit."""
    from bmil.evaluation import Evaluator

    calls = []
    run = Evaluator.run
    monkeypatch.setattr(Evaluator, "run", lambda self, policy, kind, episodes, *a, **k:
                        calls.append(episodes) or run(self, policy, kind, episodes, *a, **k))
    groups = {"validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
              "robustness": {"every_n_epochs": 0, "final_episodes": 6, "workers": 0}}
    main(["fit", "--config", str(_config(tmp_path / "full", push_demos, groups=groups)), "--trainer.max_epochs", "4"])
    calls.clear()
    cut = {"validation": {**groups["validation"], "after_epoch": 2}, "robustness": {**groups["robustness"], "test_last": False}}
    main(["fit", "--config", str(_config(tmp_path / "cut", push_demos, groups=cut)), "--trainer.max_epochs", "4"])
    assert calls == [4, 4, 6]  # the checks after epochs 3 and 4, and one test
    full, cut = (tmp_path / name / "runs" / "t" / "version_0" for name in ("full", "cut"))
    history = json.loads((full / "validation.json").read_text())["history"]
    assert json.loads((cut / "validation.json").read_text())["history"] == history[2:]
    assert not (cut / "robustness_final.json").exists()
    # The best policy is chosen among the checks that ran (the first highest), and tested on the full test.
    kept = history[2:]
    first_best = next(h["epoch"] for h in kept if h["rate"] == max(c["rate"] for c in kept))
    assert json.loads((cut / "validation.json").read_text())["best_epoch"] == first_best
    assert json.loads((cut / "robustness_best.json").read_text())["episodes"] == 6
    for prefix in ("policy.", "model."):
        a, b = (_state(tmp_path / name / "ckpt" / "last.ckpt", prefix) for name in ("full", "cut"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_demo_bounds_are_the_demo_states_box_widened_by_the_margin():
    from bmil.methods import BMIL
    from bmil.traces import TraceSettings

    method = BMIL(env="point_umaze", traces=TraceSettings(demo_bounds_margin=0.5, bound_states=True))
    obs = torch.tensor([[1.0, 1.0, 0.0, 0.1], [2.0, 1.5, 0.2, 0.3]])
    method.transitions = {"obs": obs, "next_obs": obs + 0.5, "action": torch.zeros(2, 2)}
    low, high = method._state_bounds()
    domain_low, domain_high = (torch.as_tensor(b) for b in method.domain.obs_bounds)
    box_low = torch.tensor([1.0, 1.0, 0.0, 0.1]) - 0.5 * torch.tensor([1.5, 1.0, 0.7, 0.7])
    box_high = torch.tensor([2.5, 2.0, 0.7, 0.8]) + 0.5 * torch.tensor([1.5, 1.0, 0.7, 0.7])
    assert torch.allclose(low, torch.maximum(box_low, domain_low))  # both bounds apply
    assert torch.allclose(high, torch.minimum(box_high, domain_high))


def test_recorded_study_runs_keep_their_signatures():
    """Settings added since results/table1 was recorded leave its runs' signatures as they were,
    so `bmil reproduce table1` never reruns them (bmil.runs.run._ADDED_SINCE_RECORDS)."""
    from pathlib import Path

    from bmil.studies.catalog import make_study, with_extra

    root = Path(__file__).resolve().parents[1]
    overlay = {"pickplace": "--config conf/overlays/fetch_ablation_eval.yaml",
               "point_umaze": "--config conf/overlays/maze_table1_eval.yaml"}
    study = make_study("table1", ["pickplace", "point_umaze"], [0], str(root / "conf"))
    runs = with_extra(study.runs, [], {k: v.replace("conf/", f"{root}/conf/") for k, v in overlay.items()})
    for run in runs:
        recorded = json.loads((run.folder(root / "results" / "table1") / "signature.json").read_text())
        assert run.signature == recorded["signature"], run.run_id
