import os
import tempfile

import numpy as np
import pytest


def pytest_configure(config):
    """Keep on-disk coefficient tables, schedules and kernels of the test run out of the user's
    cache (compiled kernels, keyed by everything that makes them, are shared by the workers);
    share the cores.

    Under pytest-xdist every worker gets its slice of the cores for TVM's thread pool and for
    PyTorch, since pools that each spin on every core slow all workers down.
    """
    os.environ["TPC_CACHE"] = tempfile.mkdtemp(prefix="tpc-test-cache-")
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one compiled-kernel folder for all workers
        os.environ["TPC_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="tpc-test-kernels-")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from tpc.targets import host_cores

        threads = str(max(1, host_cores() // workers))
        os.environ.setdefault("TVM_NUM_THREADS", threads)
        os.environ.setdefault("OMP_NUM_THREADS", threads)


@pytest.fixture(autouse=True)
def no_shipped_schedules(tmp_path_factory, monkeypatch):
    """Tests compile with the defaults unless they ask for the shipped schedules (`cache.PACKAGED_SCHEDULES`)."""
    from tpc import cache

    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path_factory.mktemp("no-shipped-schedules"))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private schedule cache, kernel cache and an empty shipped-schedules folder, in ``tmp_path``."""
    from tpc import cache

    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TPC_KERNEL_CACHE", str(tmp_path / "cache" / "kernels"))
    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path / "shipped")
    return tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
