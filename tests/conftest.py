import os
import tempfile

import numpy as np
import pytest


def pytest_configure(config):
    """Keep on-disk coefficient tables of the test run out of the user's cache."""
    os.environ["TPC_CACHE"] = tempfile.mkdtemp(prefix="tpc-test-cache-")


@pytest.fixture(autouse=True)
def no_shipped_schedules(tmp_path_factory, monkeypatch):
    """Tests compile with the defaults unless they ask for the repository's shipped schedules."""
    from tpc import cache

    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path_factory.mktemp("no-shipped-schedules"))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private schedule cache and an empty shipped-schedules folder, in ``tmp_path``."""
    from tpc import cache

    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path / "shipped")
    return tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
