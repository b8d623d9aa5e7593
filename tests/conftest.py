"""Shared test fixtures: the real data folder (optional) and small helpers."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Test helpers shared by test files in any sub-folder (tests/fakesweep.py: a fake sweep folder).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def shared_data_dir() -> Path:
    """Where the real development data lives: $MTLFAST_DATA, default ../shared/data (relative to the repo)."""
    env = os.environ.get("MTLFAST_DATA")
    return Path(env) if env else (HERE.parent.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "MANIFEST.md").exists():
        pytest.skip(f"real data not found at {path} (set MTLFAST_DATA to the folder holding MANIFEST.md)")
    return path

