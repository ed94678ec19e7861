import pytest

from bmil.demos import generate_demos


@pytest.fixture(scope="session")
def push_demos(tmp_path_factory):
    """Two Push demonstrations on disk (shared, read-only)."""
    path = tmp_path_factory.mktemp("demos") / "push"
    generate_demos("push", num=2, seed=0, out=path, progress=False)
    return path

