"""A Ray address where no head answers is one error within seconds, not Ray's retries for ever."""

import socket
import time

import pytest

from bmil import cluster
from bmil.cli import main
from bmil.errors import BMILError

ray = pytest.importorskip("ray")


@pytest.fixture
def no_ray_joined(monkeypatch):
    """This process as a new one that has joined no Ray cluster; joining one would fail the test."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: pytest.fail(f"ray.init was called: {kwargs}"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_address_where_no_head_answers_is_one_error_within_seconds(no_ray_joined, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(SystemExit):
        main(["evaluate", "--model.env", "push", "--policy", "random", "--episodes", "4", "--executor", "ray",
              "--ray_address", address])
    err = capsys.readouterr().err
    assert f"bmil: error: Ray address '{address}': no Ray head answers there" in err and "Traceback" not in err
    assert time.monotonic() - started < cluster.CONNECT_S + 20


def test_a_ray_address_without_a_port_is_refused_by_name(no_ray_joined, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "headnode")
    with pytest.raises(BMILError, match="Ray address 'headnode': give HOST:PORT"):
        cluster.join_ray()


def test_a_head_that_refuses_to_let_us_join_is_one_error_naming_token_auth(monkeypatch):
    """Ray's own refusal (a head with token authentication, joined without the token) ends its
    retries with a ConnectionError; bmil makes it one line that says what to set."""
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()  # a port that answers, as a head's does
        address = "127.0.0.1:%d" % head.getsockname()[1]

        def refused(**kwargs):
            raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", refused)
        with pytest.raises(BMILError, match=rf"Ray address '{address}': this process could not join the cluster .*"
                                            r"InvalidAuthToken.*RAY_AUTH_MODE=token and the token \(RAY_AUTH_TOKEN\)"):
            cluster.join_ray(address)


def test_auto_with_no_cluster_says_so(monkeypatch):
    def nothing_runs(**kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", nothing_runs)
    with pytest.raises(BMILError, match=r"Ray address 'auto': no Ray cluster runs on this machine to join"):
        cluster.join_ray("auto")
