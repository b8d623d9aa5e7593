"""The tiny sweep on the synthetic suite shared by tests/cli/test_sweep_split.py, test_sweep_memory.py,
tests/executors/test_ray.py and tests/store/test_store_transfer.py: the ``suite`` fixture (one synthetic suite
per test module) and :func:`tiny_args`, the sweep command line (3 tasks, 20 single / 30 pair steps, hidden 8,
batch 8, 1 thread).

A test module imports both (``from tinysweep import suite, tiny_args``); pytest registers an imported fixture
as the module's own."""

import pytest


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from mtlfast.data.synthetic import generate_suite

    root = tmp_path_factory.mktemp("suite")
    generate_suite(root, seed=0)
    return root


def tiny_args(suite, out, *extra):
    return ["--data", str(suite), "--tasks", "coarse", "entity", "keep", "--steps-single", "20", "--steps-pair",
            "30", "--hidden", "8", "--batch-size", "8", "--threads", "1", "--no-progress", "--out", str(out), *extra]
