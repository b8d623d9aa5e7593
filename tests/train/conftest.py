"""Fixtures shared by the training tests."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny arrays: one thread avoids OpenMP waits on a shared 2-core machine (numbers do not depend on it).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
