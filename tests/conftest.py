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


# --- native CPU kernels vs the pure-torch path ---------------------------------------------
def require_native() -> None:
    """Skip where no C++ compiler exists; with one, the native kernels must build."""
    import shutil

    from mmoe.ops import native

    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler: the native kernels cannot be built here")
    assert native.build(), "a C++ compiler exists but the native kernels did not build"


@pytest.fixture
def native_built() -> None:
    """The native kernels, built (see :func:`require_native`)."""
    require_native()


@pytest.fixture(params=["native", "torch"])
def kernels(request, monkeypatch) -> str:
    """Run a test once with mmoe's native CPU kernels and once with the pure-torch path."""
    from mmoe.ops.native import loader

    if request.param == "torch":
        monkeypatch.setitem(loader._state, "ok", False)
    else:
        require_native()
    return request.param
