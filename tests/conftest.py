from pathlib import Path

from bmil import numerics

numerics.pin()  # the tests compute as the bmil command does: pinned before anything loads torch

import pytest  # noqa: E402
import yaml  # noqa: E402

from bmil.demos import generate_demos  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# conf/pickplace_quick.yaml (a shipped config that validates) at a few epochs, steps and episodes.
TINY_PICKPLACE = {"trainer": {"max_epochs": 2},
                  "model": {"init_args": {"policy": {"steps_per_epoch": 5}, "demos": {"num": 2}}},
                  "training_success": {"every_n_epochs": 0},
                  "validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
                  "robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0}}


@pytest.fixture(scope="session")
def push_demos(tmp_path_factory):
    """Two Push demonstrations on disk (shared, read-only)."""
    path = tmp_path_factory.mktemp("demos") / "push"
    generate_demos("push", num=2, seed=0, out=path, progress=False)
    return path



@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A new user's working folder: conf/ linked beside it, tiny.yaml (TINY_PICKPLACE), and runs/ and
    demos/ made there."""
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_PICKPLACE))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def ctrl_c_still_works():
    """Every test leaves Ctrl-C as it found it: bmil called in a process (a notebook, a test) must not
    leave SIGINT ignored or SIGTERM taken over once it returns."""
    import signal

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    yield
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in a `bmil` run from a terminal, whatever
    handler the test process holds: a suite started as a background job of a script (`make test &`,
    some CI runners) inherits SIGINT ignored, and Python then keeps it ignored."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
