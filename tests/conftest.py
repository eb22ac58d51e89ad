"""Shared test fixtures."""

import os
from pathlib import Path

import pytest


# --- census-income data fixture -----------------------------------------------------------
@pytest.fixture(scope="session")
def census_dir() -> Path:
    """Directory of the shared UCI Census-Income files: $MMOE_TEST_CENSUS_DIR, else
    ``<repo>/../shared/data/census-income``; tests using it are skipped when it is absent."""
    env = os.environ.get("MMOE_TEST_CENSUS_DIR")
    repo = Path(__file__).resolve().parents[1]
    path = Path(env) if env else repo.parent / "shared" / "data" / "census-income"
    if not (path / "census-income.data.gz").is_file():
        pytest.skip(f"census-income files not found in {path} (set MMOE_TEST_CENSUS_DIR)")
    return path
