"""What the docstring examples of src/mmoe find when they run (``pytest --doctest-modules``).

Every example runs in a fresh temporary directory (also ``tmp_path``) with torch seeded and one
intra-op thread, and may use:

- ``torch``, ``np``, ``pd``;
- ``demo``: a small mixed table (numeric with gaps, categorical, a binary, a regression and a
  multiclass label);
- ``model_dir`` and ``model_data``: a trained model directory (built once per session) and
  the CSV file it was trained on;
- ``census_dir``: the shared Census-Income files (examples using it are skipped without them).

It also sizes the default seed ensemble for the tests (see :func:`pytest_runtest_setup`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _pytest.doctest import DoctestItem

from mmoe.config import training

#: the library's default: tables of at most this many training rows get a seed ensemble
ENSEMBLE_ROWS = training.ENSEMBLE_ROWS

CENSUS_DIR = Path(os.environ.get("MMOE_TEST_CENSUS_DIR")
                  or Path(__file__).resolve().parent.parent / "shared" / "data" / "census-income")


def demo_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small table with learnable labels of every task kind."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    city = rng.choice(["paris", "lyon", "nice"], n)
    spend = rng.gamma(2.0, 50.0, n)
    score = age / 20 + (city == "paris") + rng.normal(0, 0.3, n)
    age[3] = np.nan
    return pd.DataFrame({
        "user_id": [f"u{i:04d}" for i in range(n)], "age": age, "city": city, "spend": spend,
        "clicked": (spend + rng.normal(0, 30, n) > 100).astype(int),
        "hours": score + rng.normal(0, 0.2, n),
        "segment": np.where(score > 3, "high", np.where(score > 2, "mid", "low"))})


@pytest.fixture(scope="session")
def _trained_model_dir(tmp_path_factory) -> tuple[Path, Path]:
    from mmoe.app.fit import train_model_dir
    from mmoe.app.spec import build_run_spec

    root = tmp_path_factory.mktemp("doctest_model")
    data = root / "rows.csv"
    demo_frame().to_csv(data, index=False)
    spec = build_run_spec(train=str(data), tasks=["clicked:binary", "hours:regression"],
                          id_columns=["user_id"], epochs=2, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_model_dir(spec, root / "m1", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "m1", data


@pytest.fixture(autouse=True)
def _doctest_setup(request, monkeypatch, tmp_path):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    text = request.node.dtest.docstring or ""
    if "census_dir" in text and not (CENSUS_DIR / "census-income.data.gz").is_file():
        pytest.skip(f"census-income files not found in {CENSUS_DIR}")
    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(torch=torch, np=np, pd=pd, tmp_path=tmp_path, demo=demo_frame(),
                     census_dir=CENSUS_DIR)
    if "model_dir" in text or "model_data" in text:
        model_dir, data = request.getfixturevalue("_trained_model_dir")
        namespace.update(model_dir=model_dir, model_data=data)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run in full where a CUDA GPU is visible, and are skipped with the
    reason elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests train one model where the default would train a seed ensemble (tables of at most
    ``ENSEMBLE_ROWS`` rows), unless marked ``default_ensemble``; docstring examples keep the
    library's default. Set before the item's fixtures, so module fixtures that train follow
    the first test that uses them. The tests' tables are small: with the ensemble every
    training in the suite would be five, and the tests' subject is one model; the default itself
    is tested end to end by the marked tests. (Subprocess runs of ``mmoe`` keep the default.)"""
    library_default = isinstance(item, DoctestItem) or item.get_closest_marker("default_ensemble")
    training.ENSEMBLE_ROWS = ENSEMBLE_ROWS if library_default else 0
