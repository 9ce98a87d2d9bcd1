import os
import tempfile

import numpy as np
import pytest


def pytest_configure(config):
    """Keep on-disk coefficient tables of the test run out of the user's cache."""
    os.environ["TPC_CACHE"] = tempfile.mkdtemp(prefix="tpc-test-cache-")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
